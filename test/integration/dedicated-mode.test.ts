// SPDX-License-Identifier: Apache-2.0
// Dedicated mode (PROXY_MODE=dedicated, reference §4.5): Skein runs inside
// one workload's own namespace, for that workload only, with no istio-cni;
// the operator's single nat rule sends the workload's outbound TCP to 15001.
// Here the workload's traffic crosses to a pod on the other node, whose
// node runs Skein in the usual shared mode, over HBONE.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { listenTcp } from '@skein/bpf';
import { startDaemon, type Daemon } from '../bench/daemon.ts';
import { startSkeinNodes, workloadYaml, type SkeinNodes } from '../bench/paths/skein-nodes.ts';
import { Lab, type LabPod } from '../lab/index.ts';
import { must } from './lab-helpers.ts';
import { until } from './until.ts';

const MAIN = fileURLToPath(new URL('../../ztunnel-compat/src/main.ts', import.meta.url));
const why = process.getuid?.() !== 0 ? 'needs root (lab namespaces)' : false;

let lab: Lab | undefined;
let node1: SkeinNodes | undefined;
let dedicated: Daemon | undefined;
let server: net.Server | undefined;
const seen: string[] = [];

const pod = (name: string): LabPod => must(lab, 'lab').pod(name);

before(async () => {
  if (why !== false) return;
  lab = Lab.create({ nodes: [{ pods: [{ name: 'app', serviceAccount: 'app' }] }, { pods: [{ name: 'server', serviceAccount: 'server' }] }] });
  const s = pod('server');
  server = await listenTcp({ address: s.ip4, port: 8080, netns: s.netnsPath }, (c) => {
    seen.push(c.remoteAddress ?? '');
    c.once('data', () => { c.end('pong from server\n'); });
    c.on('error', () => undefined);
  });
  const mesh = `workloads:\n${workloadYaml(pod('app'))}${workloadYaml(s)}`;
  node1 = await startSkeinNodes(lab, { name: 'dedicated', nodes: [s.node], enroll: [s], fastpath: 'off', logs: true, mesh });
  // The workload's own Skein: same static config, same local CA.
  const dir = path.join(lab.dir, 'dedicated');
  dedicated = await startDaemon(pod('app'), {
    cmd: process.execPath, args: [MAIN, 'proxy'], ports: [15021], comm: 'MainThread', timeoutMs: 20_000, logPath: path.join(dir, 'app.skein.log'),
    env: {
      ...process.env, XDS_ADDRESS: '', LOCAL_XDS_PATH: path.join(dir, 'mesh.yaml'), FAKE_CA: 'true', SKEIN_LOCAL_CA_DIR: path.join(dir, 'ca'),
      NODE_NAME: pod('app').node.name, PROXY_MODE: 'dedicated', PROXY_WORKLOAD_INFO: 'default/app/app', PACKET_MARK: '1337',
      IPV6_ENABLED: 'false', SKEIN_KERNEL_FASTPATH: 'off', RUST_LOG: 'info', LOG_FORMAT: 'json',
    },
  });
  // ztunnel's redirect for dedicated mode: the workload's outbound TCP, except Skein's own (marked), to 15001.
  pod('app').run('iptables', '-t', 'nat', '-A', 'OUTPUT', '!', '-o', 'lo', '-p', 'tcp', '-m', 'mark', '!', '--mark', '0x539/0xfff', '-j', 'REDIRECT', '--to-ports', '15001');
});

after(async () => {
  await dedicated?.stop();
  await node1?.teardown();
  server?.close();
  lab?.teardown();
});

test('dedicated mode: the workload\'s own Skein carries its traffic over HBONE to a pod on another node, which sees the workload\'s IP', { skip: why }, async () => {
  const r = await pod('app').exec('bash', ['-c', `exec 3<>/dev/tcp/${pod('server').ip4}/8080 || exit 7; echo ping >&3; head -n1 <&3`], { timeoutMs: 8000 });
  assert.equal(r.stdout.trim(), 'pong from server', r.stderr);
  assert.equal(seen.at(-1), pod('app').ip4);
  // Access lines are written when the connection ends; give both daemons a moment.
  const lines = (file: string): Record<string, unknown>[] => fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  const find = (file: string, want: Record<string, unknown>): Record<string, unknown> | undefined =>
    lines(file).find((l) => l.message === 'connection complete' && Object.entries(want).every(([k, v]) => l[k] === v));
  const serverLog = must(node1, 'node1').logOf(pod('server').node);
  const ownLog = path.join(must(lab, 'lab').dir, 'dedicated', 'app.skein.log');
  const inbound = { direction: 'inbound', 'src.identity': 'spiffe://cluster.local/ns/default/sa/app', 'dst.workload': 'server' };
  const outbound = { direction: 'outbound', 'src.workload': 'app', 'dst.hbone_addr': `${pod('server').ip4}:8080` };
  await until('access lines', () => find(serverLog, inbound) !== undefined && find(ownLog, outbound) !== undefined).catch(() => undefined);
  // The server side saw an mTLS peer with the workload's identity; the workload's Skein sent it over HBONE.
  assert.ok(find(serverLog, inbound), fs.readFileSync(serverLog, 'utf8').slice(-2000));
  assert.ok(find(ownLog, outbound), fs.readFileSync(ownLog, 'utf8').slice(-2000));
});
