// SPDX-License-Identifier: Apache-2.0
// The data path over IPv6: dual-stack pods on two nodes, Skein with
// IPV6_ENABLED (the default), and a client that dials the server's IPv6
// address. istio-cni's double installs its ip6tables rules as well.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { listenTcp } from '@skein/bpf';
import { startApp, type App } from '@skein/ztunnel-compat/app';
import { parseConfig } from '@skein/ztunnel-compat/config';
import { createLogger } from '@skein/ztunnel-compat/log';
import { CniDouble } from '../cni/cni-double.ts';
import { kernelMode } from './kernel-mode.ts';
import { Lab, type LabPod } from '../lab/index.ts';

const needsRoot = process.getuid?.() === 0 ? false : 'needs root (lab namespaces, ip6tables)';
const quiet = createLogger('error', 'json', fs.createWriteStream('/dev/null'));

let lab: Lab | undefined;
const apps: App[] = [];
const cnis: CniDouble[] = [];
let server: net.Server | undefined;
const seen: string[] = [];

function must<T>(x: T | undefined, what: string): T {
  if (x === undefined) throw new Error(`${what} missing`);
  return x;
}
const pod = (name: string): LabPod => must(lab, 'lab').pod(name);

before(async () => {
  if (needsRoot) return;
  lab = Lab.create({ nodes: [{ pods: [{ name: 'client' }] }, { pods: [{ name: 'server' }] }] });
  const w = (p: LabPod, n: string): string => `- {uid: Kubernetes//Pod/default/${p.name}, name: ${p.name}, namespace: default, trustDomain: cluster.local, serviceAccount: default, workloadIps: ["${p.ip4}", "${p.ip6}"], protocol: HBONE, node: ${n}, services: {}}\n`;
  fs.writeFileSync(path.join(lab.dir, 'mesh.yaml'), `workloads:\n${w(pod('client'), 'node0')}${w(pod('server'), 'node1')}`);
  server = await listenTcp({ address: pod('server').ip6, port: 8080, netns: pod('server').netnsPath }, (s) => {
    seen.push(s.remoteAddress ?? '');
    s.once('data', () => { s.end('pong6\n'); });
    s.on('error', () => undefined);
  });
  for (const [i, n] of must(lab, 'lab').nodes.entries()) {
    const cni = new CniDouble(n, CniDouble.socketPathFor(must(lab, 'lab').dir, n));
    cnis.push(cni);
    apps.push(await startApp(parseConfig({
      XDS_ADDRESS: '', LOCAL_XDS_PATH: path.join(must(lab, 'lab').dir, 'mesh.yaml'), FAKE_CA: 'true', SKEIN_LOCAL_CA_DIR: path.join(must(lab, 'lab').dir, 'ca'),
      NODE_NAME: `node${i}`, INPOD_UDS: cni.zds.path, SKEIN_KERNEL_FASTPATH: kernelMode(),
    }), quiet, { ports: { admin: 0, stats: 0, readiness: 0 } }));
    await cni.zds.waitReady();
  }
  await must(cnis[0], 'cni0').enroll(pod('client'));
  await must(cnis[1], 'cni1').enroll(pod('server'));
});

after(async () => {
  for (const a of apps) await a.shutdown({ cleanupKernel: true });
  for (const c of cnis) c.close();
  server?.close();
  lab?.teardown();
});

test('pod → pod over IPv6 on another node goes through both proxies; the server sees the client\'s IPv6 address', { skip: needsRoot }, async () => {
  const r = await pod('client').exec('bash', ['-c', `exec 3<>/dev/tcp/${pod('server').ip6}/8080 || exit 7; echo ping >&3; head -n1 <&3`], { timeoutMs: 8000 });
  assert.equal(r.stdout.trim(), 'pong6', r.stderr);
  assert.equal(seen.at(-1), pod('client').ip6);
  // Proof it was proxied: the server node's Skein counted an inbound mTLS connection.
  const metrics = await (await fetch(`http://127.0.0.1:${must(apps[1], 'app1').admin.ports.stats}/metrics`)).text();
  assert.match(metrics, /istio_tcp_connections_opened_total\{reporter="destination"[^}]*connection_security_policy="mutual_tls"[^}]*\} [1-9]/);
  // Both pods listen on the IPv6 wildcard as well as IPv4.
  assert.match(pod('server').run('ss', '-Hltn'), /\[::\]:15008/);
});
