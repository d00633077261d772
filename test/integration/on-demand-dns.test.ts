// SPDX-License-Identifier: Apache-2.0
// On-demand DNS on the lab: a service whose endpoint is known only by
// hostname (what istiod sends for a ServiceEntry with DNS resolution) is
// reached by resolving the name when a connection needs it, as ztunnel does.
// Skein runs as a process in node0's namespace (its lookups leave from
// there, as from ztunnel's pod); the cluster's DNS is dnsmasq in the 'ext'
// pod, which also serves the "external" HTTP app.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { listenTcp } from '@skein/bpf';
import { startSkeinNodes, workloadYaml, type SkeinNodes } from '../bench/paths/skein-nodes.ts';
import { Lab, type LabNode, type LabPod } from '../lab/index.ts';
import { must } from './lab-helpers.ts';
import { until } from './until.ts';

const why = process.getuid?.() !== 0 ? 'needs root (lab namespaces)' : false;
const VIP = '10.96.0.80';
const GONE_VIP = '10.96.0.81';

let lab: Lab | undefined;
let skein: SkeinNodes | undefined;
let app: http.Server | undefined;
let listener: net.Server | undefined;
let dnsmasqPid: number | undefined;

const pod = (name: string): LabPod => must(lab, 'lab').pod(name);

async function get(ip: string): Promise<{ code: number | null; out: string }> {
  const r = await pod('client').exec('curl', ['-sS', '-m', '5', `http://${ip}/`], { timeoutMs: 10_000 });
  return { code: r.code, out: (r.stdout + r.stderr).trim() };
}

const node0 = (): LabNode => must(must(lab, 'lab').nodes[0], 'node0');

/** Skein's metrics, read inside node0's namespace (where it listens). */
function metrics(): string {
  return node0().run('curl', '-s', 'http://127.0.0.1:15020/metrics');
}
const accessLog = (): string => fs.readFileSync(must(skein, 'skein').logOf(node0()), 'utf8');
function total(m: string, name: string, hostname: string): number {
  return [...m.matchAll(new RegExp(`^${name}\\{[^}]*hostname="${hostname.replaceAll('.', '\\.')}"[^}]*\\} (\\d+)`, 'gm'))].reduce((n, x) => n + Number(x[1]), 0);
}

before(async () => {
  if (why !== false) return;
  lab = Lab.create({ nodes: [{ pods: [{ name: 'client', serviceAccount: 'client' }, { name: 'ext', serviceAccount: 'ext' }] }] });
  const ext = pod('ext');
  app = http.createServer((_req, res) => { res.end('hello from ext\n'); });
  listener = await listenTcp({ address: ext.ip4, port: 8080, netns: ext.netnsPath }, (s) => { app?.emit('connection', s); });
  dnsmasqPid = ext.spawn('dnsmasq', ['--keep-in-foreground', '--no-resolv', '--no-hosts', '--bind-interfaces', `--listen-address=${ext.ip4}`,
    `--host-record=api.ext.test,${ext.ip4}`, '--address=/gone.test/', '--log-facility=-'], { stdio: 'ignore' }).pid;
  await until('dnsmasq listening', () => ext.run('ss', '-Hlun').includes(':53'));
  const resolv = path.join(lab.dir, 'resolv.conf');
  fs.writeFileSync(resolv, `nameserver ${ext.ip4}\n`);
  // A ServiceEntry-like service per hostname: the endpoint has no IP, only the name, and takes plain TCP.
  const hostOnly = (name: string, host: string): string =>
    `- {uid: Kubernetes//ServiceEntry/default/${name}, name: ${name}, namespace: default, trustDomain: cluster.local, hostname: ${host}, protocol: TCP, services: {default/${host}: {80: 8080}}}\n`;
  skein = await startSkeinNodes(lab, {
    name: 'on-demand-dns', nodes: [node0()], enroll: [pod('client')], fastpath: 'off', logs: true,
    env: { SKEIN_DNS_RESOLV_CONF: resolv },
    mesh: `workloads:\n${workloadYaml(pod('client'))}${hostOnly('api', 'api.ext.test')}${hostOnly('gone', 'gone.test')}services:
- {name: api, namespace: default, hostname: api.ext.test, vips: ["/${VIP}"], ports: {80: 8080}}
- {name: gone, namespace: default, hostname: gone.test, vips: ["/${GONE_VIP}"], ports: {80: 8080}}
`,
  });
});

after(async () => {
  try { if (dnsmasqPid !== undefined) process.kill(dnsmasqPid, 'SIGKILL'); } catch { /* gone */ }
  await skein?.teardown();
  listener?.close();
  app?.close();
  lab?.teardown();
});

test('a service whose endpoint has only a hostname: Skein resolves it when the pod connects, then carries the connection', { skip: why }, async () => {
  const r = await get(VIP);
  assert.equal(r.out, 'hello from ext', r.out);
  const again = await get(VIP);
  assert.equal(again.out, 'hello from ext');
  const m = metrics();
  assert.equal(total(m, 'istio_on_demand_dns_total', 'api.ext.test'), 2, m.split('\n').filter((l) => l.includes('on_demand')).join('\n'));
  assert.equal(total(m, 'istio_on_demand_dns_cache_misses_total', 'api.ext.test'), 1, 'the second connection used the cached answer');
  const log = accessLog();
  assert.match(log, new RegExp(`"dst.addr":"${pod('ext').ip4.replaceAll('.', '\\.')}:8080"[^\\n]*"dst.service":"api.ext.test"[^\\n]*"message":"connection complete"`));
});

test('a hostname that does not resolve fails the connection (response flag CONNECT), with the reason in the access log', { skip: why }, async () => {
  const r = await get(GONE_VIP);
  assert.notEqual(r.code, 0, r.out);
  const log = accessLog();
  assert.match(log, /"dst.service":"gone\.test"[^\n]*"error":"DNS lookup of gone\.test failed[^"]*"[^\n]*"message":"connection failed"/);
  assert.match(metrics(), /istio_tcp_connections_failed_total\{[^}]*destination_service="gone\.test"[^}]*response_flags="CONNECT"[^}]*\} 1/);
});
