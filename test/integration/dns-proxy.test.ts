// SPDX-License-Identifier: Apache-2.0
// The DNS proxy on the lab. istio-cni's DNS capture (on by default) sends an
// enrolled pod's port-53 traffic to 15053 on the pod's loopback; Skein must
// be there, or every name lookup in the pod fails. Real peers on both ends:
// Debian's dig in the enrolled pod, dnsmasq as the upstream in another pod.
// Skein answers hostnames it knows from WDS with their VIPs (a ServiceEntry
// host included) and sends everything else to the upstream from inside the
// pod, over UDP or TCP as asked.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { startApp, type App } from '@skein/ztunnel-compat/app';
import { parseConfig } from '@skein/ztunnel-compat/config';
import { createLogger } from '@skein/ztunnel-compat/log';
import { CniDouble } from '../cni/cni-double.ts';
import { Lab, type LabPod } from '../lab/index.ts';
import { captured, must } from './lab-helpers.ts';
import { until } from './until.ts';

const why = process.getuid?.() !== 0 ? 'needs root (lab namespaces)' : false;
const quiet = createLogger('error', 'json', fs.createWriteStream('/dev/null'));
const SVC_VIP = '10.96.0.70';
const SVC_VIP6 = 'fd00:96::70';
const SE_VIP = '240.240.0.10';
const WILD_VIP = '240.240.0.11';

let lab: Lab | undefined;
let app: App | undefined;
let cni: CniDouble | undefined;
let dnsmasq: ChildProcess | undefined;

const pod = (name: string): LabPod => must(lab, 'lab').pod(name);

interface Dig { status: string; answers: string[]; out: string }

/** dig from the enrolled client pod, at the upstream's address (the capture takes it to Skein). */
async function dig(name: string, type = 'A', extra: string[] = [], server = pod('dns').ip4): Promise<Dig> {
  const r = await pod('client').exec('dig', ['+tries=1', '+time=5', ...extra, `@${server}`, name, type], { timeoutMs: 15_000 });
  const out = r.stdout + r.stderr;
  const status = /status: ([A-Z]+)/.exec(out)?.[1] ?? `no answer (exit ${r.code})`;
  const section = /;; ANSWER SECTION:\n([\s\S]*?)\n\n/.exec(out)?.[1] ?? '';
  return { status, answers: section.split('\n').filter((l) => l.trim() !== '').map((l) => l.trim().split(/\s+/).at(-1) ?? ''), out };
}

async function metrics(): Promise<string> {
  return (await fetch(`http://127.0.0.1:${must(app, 'app').admin.ports.stats}/metrics`)).text();
}
function count(m: string, name: string, type: string, protocol: string): number {
  return Number(new RegExp(`${name}\\{request_query_type="${type}",request_protocol="${protocol}",source_canonical_service="client"[^}]*\\} (\\d+)`).exec(m)?.[1] ?? 0);
}

before(async () => {
  if (why !== false) return;
  lab = Lab.create({ nodes: [{ pods: [{ name: 'client', serviceAccount: 'client' }, { name: 'dns', serviceAccount: 'dns' }] }] });
  const c = pod('client');
  fs.writeFileSync(path.join(lab.dir, 'mesh.yaml'), `workloads:
- {uid: Kubernetes//Pod/${c.namespace}/${c.name}, name: ${c.name}, namespace: ${c.namespace}, trustDomain: cluster.local, serviceAccount: ${c.serviceAccount}, canonicalName: client, workloadIps: ["${c.ip4}"], protocol: HBONE, node: node0, services: {}}
services:
- {name: echo, namespace: ${c.namespace}, hostname: echo.${c.namespace}.svc.cluster.local, vips: ["/${SVC_VIP}", "/${SVC_VIP6}"], ports: {80: 8080}}
- {name: api.example.test, namespace: ${c.namespace}, hostname: api.example.test, vips: ["/${SE_VIP}"], ports: {443: 443}}
- {name: wild, namespace: ${c.namespace}, hostname: "*.wild.test", vips: ["/${WILD_VIP}"], ports: {443: 443}}
`);
  // The cluster's DNS as far as Skein knows: dnsmasq in the (unenrolled) dns pod.
  const resolv = path.join(lab.dir, 'resolv.conf');
  fs.writeFileSync(resolv, `search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver ${pod('dns').ip4}\noptions ndots:5\n`);
  dnsmasq = pod('dns').spawn('dnsmasq', ['--keep-in-foreground', '--no-resolv', '--no-hosts', '--bind-interfaces', `--listen-address=${pod('dns').ip4}`,
    '--host-record=upstream.test,10.9.9.9', '--address=/blocked.test/', '--log-facility=-'], { stdio: 'ignore' });
  await until('dnsmasq listening', () => pod('dns').run('ss', '-Hlun').includes(':53'));
  const node0 = must(lab.nodes[0], 'node0');
  cni = new CniDouble(node0, CniDouble.socketPathFor(lab.dir, node0));
  app = await startApp(parseConfig({
    XDS_ADDRESS: '', LOCAL_XDS_PATH: path.join(lab.dir, 'mesh.yaml'), FAKE_CA: 'true', SKEIN_LOCAL_CA_DIR: path.join(lab.dir, 'ca'),
    NODE_NAME: 'node0', INPOD_UDS: cni.zds.path, IPV6_ENABLED: 'true', SKEIN_KERNEL_FASTPATH: 'off', SKEIN_DNS_RESOLV_CONF: resolv,
  }), quiet, { ports: { admin: 0, stats: 0, readiness: 0 } });
  await cni.zds.waitReady();
  await cni.enroll(c);
});

after(async () => {
  // By PID; the last test may have killed it already.
  try { if (dnsmasq?.pid !== undefined) process.kill(dnsmasq.pid, 'SIGKILL'); } catch { /* gone */ }
  await app?.shutdown({ drainMs: 0 });
  cni?.close();
  lab?.teardown();
});

test('an enrolled pod\'s DNS reaches Skein on its loopback (UDP and TCP 15053, IPv4 and IPv6), as istio-cni\'s capture expects', { skip: why }, async () => {
  const udp = pod('client').run('ss', '-Hlun');
  const tcp = pod('client').run('ss', '-Hltn');
  assert.match(udp, /127\.0\.0\.1:15053/);
  assert.match(tcp, /127\.0\.0\.1:15053/);
  assert.match(udp, /\[::1\]:15053/);
  // A nameserver address of either family: ip6tables' rule takes IPv6 queries to [::1]:15053.
  const v6 = await dig('echo', 'AAAA', [], pod('dns').ip6);
  assert.deepEqual([v6.status, v6.answers], ['NOERROR', [SVC_VIP6]], v6.out);
  const v6tcp = await dig('echo', 'A', ['+tcp'], pod('dns').ip6);
  assert.deepEqual([v6tcp.status, v6tcp.answers], ['NOERROR', [SVC_VIP]], v6tcp.out);
});

test('hostnames WDS knows are answered by Skein with their VIPs: a Service by its short and full names, a ServiceEntry host, a wildcard host', { skip: why }, async () => {
  const before = captured(pod('client'), 'ISTIO_OUTPUT', 15053);
  for (const name of ['echo.default.svc.cluster.local', 'echo', 'echo.default']) {
    const r = await dig(name);
    assert.equal(r.status, 'NOERROR', r.out);
    assert.deepEqual(r.answers, [SVC_VIP], r.out);
  }
  const se = await dig('api.example.test');
  assert.deepEqual([se.status, se.answers], ['NOERROR', [SE_VIP]], se.out);
  // As a stub resolver with ndots:5 asks first: the search domain appended.
  const searched = await dig('api.example.test.default.svc.cluster.local');
  assert.deepEqual(searched.answers, [SE_VIP], searched.out);
  // A wildcard ServiceEntry host covers the names under it.
  const wild = await dig('a.b.wild.test');
  assert.deepEqual([wild.status, wild.answers], ['NOERROR', [WILD_VIP]], wild.out);
  // No IPv6 VIP: an empty answer, not a forward.
  const aaaa = await dig('api.example.test', 'AAAA');
  assert.deepEqual([aaaa.status, aaaa.answers], ['NOERROR', []], aaaa.out);
  assert.ok(captured(pod('client'), 'ISTIO_OUTPUT', 15053) > before, 'istio-cni\'s rule took the queries to 15053');
});

test('everything else goes to the upstream from inside the pod, over UDP or TCP as asked, and its answer comes back as it was', { skip: why }, async () => {
  const m0 = await metrics();
  const udp = await dig('upstream.test');
  assert.deepEqual([udp.status, udp.answers], ['NOERROR', ['10.9.9.9']], udp.out);
  const tcp = await dig('upstream.test', 'A', ['+tcp']);
  assert.deepEqual([tcp.status, tcp.answers], ['NOERROR', ['10.9.9.9']], tcp.out);
  const nx = await dig('blocked.test');
  assert.equal(nx.status, 'NXDOMAIN', nx.out);
  const m = await metrics();
  assert.equal(count(m, 'istio_dns_upstream_requests_total', 'a', 'udp') - count(m0, 'istio_dns_upstream_requests_total', 'a', 'udp'), 2);
  assert.equal(count(m, 'istio_dns_upstream_requests_total', 'a', 'tcp') - count(m0, 'istio_dns_upstream_requests_total', 'a', 'tcp'), 1);
  assert.ok(count(m, 'istio_dns_requests_total', 'a', 'udp') > count(m0, 'istio_dns_requests_total', 'a', 'udp'));
  assert.equal(count(m, 'istio_dns_upstream_failures_total', 'a', 'udp'), 0);
});

test('a malformed message gets FORMERR with its id; the proxy keeps serving', { skip: why }, async () => {
  const r = await pod('client').exec('python3', ['-c', `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
s.sendto(bytes.fromhex("beef01000001000000000000") + b"\\x3f", ("${pod('dns').ip4}", 53))
d, _ = s.recvfrom(512); print(d[:4].hex())`], { timeoutMs: 10_000 });
  assert.equal(r.stdout.trim(), 'beef8181', r.stderr); // id, QR + RD, RA + FORMERR
  assert.deepEqual((await dig('echo')).answers, [SVC_VIP]);
});

test('with the upstream down, forwarded queries get SERVFAIL (and count as failures); known names still resolve', { skip: why }, async () => {
  const pid = must(dnsmasq?.pid, 'dnsmasq pid');
  process.kill(pid, 'SIGKILL');
  await until('dnsmasq gone', () => !pod('dns').run('ss', '-Hlun').includes(':53'));
  const r = await dig('upstream.test');
  assert.equal(r.status, 'SERVFAIL', r.out);
  assert.ok(count(await metrics(), 'istio_dns_upstream_failures_total', 'a', 'udp') >= 1);
  assert.deepEqual((await dig('echo')).answers, [SVC_VIP]);
});

test('a pod that leaves the mesh takes its DNS listeners with it', { skip: why }, async () => {
  await must(cni, 'cni').unenroll(pod('client'));
  await until('15053 closed', () => !pod('client').run('ss', '-Hlun').includes(':15053'));
  assert.doesNotMatch(pod('client').run('ss', '-Hltn'), /:15053/);
});
