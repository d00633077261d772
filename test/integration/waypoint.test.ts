// SPDX-License-Identifier: Apache-2.0
// Waypoints end to end on the lab (issue 6): a service with a sandwiched
// waypoint — Debian's haproxy with `accept-proxy`, routing on Host, standing
// in for an Envoy gateway that takes a PROXY/15088 inbound binding — weighted
// waypoint canaries, and a waypoint that resolves to nothing. Two Skein
// daemons (in-process, static config), istio-cni's double enrolling pods.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { connectTcp, listenTcp } from '@skein/bpf';
import { decodeProxyV2, TLV_PEER_IDENTITY, TLV_SERVICE_HOSTNAME } from '@skein/waypoint/proxy-protocol';
import { startApp, type App } from '@skein/ztunnel-compat/app';
import { parseConfig } from '@skein/ztunnel-compat/config';
import { createLogger } from '@skein/ztunnel-compat/log';
import { CniDouble } from '../cni/cni-double.ts';
import { Lab, type LabNode, type LabPod } from '../lab/index.ts';
import { kernelMode } from './kernel-mode.ts';
import { haproxyWaypointConfig } from './lab-helpers.ts';
import { until } from './until.ts';

const needsRoot = process.getuid?.() === 0 ? false : 'needs root (lab namespaces, iptables)';
const quiet = createLogger('error', 'json', fs.createWriteStream('/dev/null'));
const APP_TUNNEL = 15088;
/** Where haproxy listens behind the header-recording tee. */
const HAPROXY_PORT = 15089;

let lab: Lab | undefined;
const apps: App[] = [];
const cnis: CniDouble[] = [];
const closers: (() => void)[] = [];

function must<T>(x: T | undefined, what: string): T {
  if (x === undefined) throw new Error(`${what} missing`);
  return x;
}
const pod = (name: string): LabPod => must(lab, 'lab').pod(name);
const node = (i: number): LabNode => must(must(lab, 'lab').nodes[i], `node${i}`);

interface SeenHeader { src: string; dst: string; identity: string | undefined; service: string | undefined }
/** PROXY headers each waypoint pod's app-tunnel port received, in order. */
const headers = new Map<string, SeenHeader[]>();
/** Client addresses the backend saw. */
const backendSaw: string[] = [];

function staticConfig(): string {
  const w = (p: LabPod, nodeName: string, extra = ''): string => `- uid: Kubernetes//Pod/${p.namespace}/${p.name}
  name: ${p.name}
  namespace: ${p.namespace}
  trustDomain: cluster.local
  serviceAccount: ${p.serviceAccount}
  workloadIps: ["${p.ip4}"]
  protocol: HBONE
  node: ${nodeName}
${extra.includes('  services:') ? extra : `${extra}  services: {}\n`}`;
  const tunnel = `  applicationTunnel: {protocol: PROXY, port: ${APP_TUNNEL}}\n`;
  const memberOf = (svc: string, port: number): string => `  services:\n    default/${svc}.default.svc.cluster.local: {${port}: ${port === 15008 ? 15008 : 8080}}\n`;
  const waypointSvc = (name: string, vip: string): string => `- {name: ${name}, namespace: default, hostname: ${name}.default.svc.cluster.local, vips: ["/${vip}"], ports: {15008: 15008}}\n`;
  const byHost = (name: string): string => `{destination: default/${name}.default.svc.cluster.local}`;
  return `workloads:
${w(pod('client'), 'node0')}${w(pod('waypoint'), 'node1', tunnel + memberOf('waypoint', 15008))}\
${w(pod('backend'), 'node1', `  waypoint: ${byHost('waypoint')}\n${memberOf('echo', 80)}`)}\
${w(pod('canary-a'), 'node1', tunnel + memberOf('wp-a', 15008))}${w(pod('canary-b'), 'node1', tunnel + memberOf('wp-b', 15008))}\
${w(pod('canary-c'), 'node1', tunnel + memberOf('wp-c', 15008))}
services:
- {name: echo, namespace: default, hostname: echo.default.svc.cluster.local, vips: ["/10.96.0.30"], ports: {80: 8080}, waypoint: ${byHost('waypoint')}}
- {name: split, namespace: default, hostname: split.default.svc.cluster.local, vips: ["/10.96.0.33"], ports: {80: 8080},
   weightedWaypoints: [{waypoint: ${byHost('wp-a')}, weight: 3}, {waypoint: ${byHost('wp-b')}, weight: 1}, {waypoint: ${byHost('wp-c')}, weight: 0}]}
- {name: lost, namespace: default, hostname: lost.default.svc.cluster.local, vips: ["/10.96.0.34"], ports: {80: 8080}, waypoint: ${byHost('nowhere')}}
${waypointSvc('waypoint', '10.96.0.31')}${waypointSvc('wp-a', '10.96.0.41')}${waypointSvc('wp-b', '10.96.0.42')}${waypointSvc('wp-c', '10.96.0.43')}`;
}

/**
 * The app-tunnel port of a waypoint pod: decodes and records the PROXY v2
 * header, then either hands the untouched bytes on to haproxy (`forward`) or
 * answers with its own name, for the canaries.
 */
async function tunnelPort(p: LabPod, forward: number | undefined): Promise<void> {
  headers.set(p.name, []);
  const server = await listenTcp({ address: '127.0.0.1', port: APP_TUNNEL, netns: p.netnsPath }, (s: net.Socket) => {
    s.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      const decoded = decodeProxyV2(buf);
      if (decoded === undefined) return; // not all of it yet
      s.off('data', onData);
      const h = decoded.header;
      const tlv = (type: number): string | undefined => h.tlvs.find((t) => t.type === type)?.value.toString();
      headers.get(p.name)?.push({ src: `${h.source.ip}:${h.source.port}`, dst: `${h.destination.ip}:${h.destination.port}`, identity: tlv(TLV_PEER_IDENTITY), service: tlv(TLV_SERVICE_HOSTNAME) });
      if (forward === undefined) {
        s.end(`${p.name}\n`);
        return;
      }
      const up = connectTcp({ address: '127.0.0.1', port: forward, netns: p.netnsPath });
      up.on('error', () => { s.destroy(); });
      s.on('close', () => { up.destroy(); });
      up.write(buf); // the header as Skein sent it, and whatever followed
      s.pipe(up).pipe(s);
    };
    s.on('data', onData);
  });
  closers.push(() => { server.close(); });
}

before(async () => {
  if (needsRoot) return;
  lab = Lab.create({ nodes: [
    { pods: [{ name: 'client' }] },
    { pods: [{ name: 'waypoint', serviceAccount: 'waypoint' }, { name: 'backend', serviceAccount: 'backend' }, { name: 'canary-a', serviceAccount: 'wp-a' }, { name: 'canary-b', serviceAccount: 'wp-b' }, { name: 'canary-c', serviceAccount: 'wp-c' }] },
  ] });
  fs.writeFileSync(path.join(lab.dir, 'mesh.yaml'), staticConfig());
  // Count HBONE from the client pod into node1, per destination pod.
  for (const target of ['waypoint', 'backend']) {
    node(1).run('iptables', '-t', 'mangle', '-A', 'FORWARD', '-s', pod('client').ip4, '-d', pod(target).ip4, '-p', 'tcp', '--dport', '15008');
  }
  // The backend: an HTTP server that says who connected and what it was told.
  const web = http.createServer((req, res) => {
    backendSaw.push(req.socket.remoteAddress ?? '');
    res.end(JSON.stringify({ from: req.socket.remoteAddress, xClientSrc: req.headers['x-client-src'], host: req.headers.host }));
  });
  const backend = await listenTcp({ address: pod('backend').ip4, port: 8080, netns: pod('backend').netnsPath }, (s) => { web.emit('connection', s); });
  closers.push(() => { backend.close(); web.close(); });
  // The sandwiched waypoint: haproxy takes PROXY v2, routes on Host, and its
  // own outbound to the backend pod is captured by Skein again.
  const cfg = path.join(lab.dir, 'haproxy.cfg');
  fs.writeFileSync(cfg, haproxyWaypointConfig({ port: HAPROXY_PORT, host: 'echo.default.svc.cluster.local', backend: `${pod('backend').ip4}:8080` }));
  pod('waypoint').spawn('haproxy', ['-db', '-f', cfg], { stdio: 'ignore' });
  await until('haproxy listening', () => pod('waypoint').run('ss', '-Hltn').includes(`:${HAPROXY_PORT}`));
  await tunnelPort(pod('waypoint'), HAPROXY_PORT);
  for (const c of ['canary-a', 'canary-b', 'canary-c']) await tunnelPort(pod(c), undefined);

  for (const [i, n] of [node(0), node(1)].entries()) {
    const cni = new CniDouble(n, CniDouble.socketPathFor(lab.dir, n));
    cnis.push(cni);
    apps.push(await startApp(parseConfig({
      XDS_ADDRESS: '', LOCAL_XDS_PATH: path.join(lab.dir, 'mesh.yaml'), FAKE_CA: 'true', SKEIN_LOCAL_CA_DIR: path.join(lab.dir, 'ca'),
      NODE_NAME: `node${i}`, INPOD_UDS: cni.zds.path, IPV6_ENABLED: 'false', SKEIN_KERNEL_FASTPATH: kernelMode(),
    }), quiet, { ports: { admin: 0, stats: 0, readiness: 0 } }));
    await cni.zds.waitReady();
  }
  await must(cnis[0], 'cni0').enroll(pod('client'));
  for (const p of ['waypoint', 'backend', 'canary-a', 'canary-b', 'canary-c']) await must(cnis[1], 'cni1').enroll(pod(p));
});

after(async () => {
  for (const a of apps) await a.shutdown({ cleanupKernel: true });
  for (const c of cnis) c.close();
  for (const c of closers) c();
  lab?.teardown();
});

function hboneFromClientTo(target: string): number {
  const out = node(1).run('iptables', '-t', 'mangle', '-L', 'FORWARD', '-v', '-n', '-x');
  const line = out.split('\n').find((l) => l.includes(pod('client').ip4) && l.includes(pod(target).ip4) && l.includes('dpt:15008'));
  return line === undefined ? -1 : Number(line.trim().split(/\s+/)[0]);
}

async function curl(host: string, vip: string): Promise<{ code: number; body: string; err: string }> {
  const r = await pod('client').exec('curl', ['-sS', '-m', '5', '-H', `Host: ${host}`, '-w', '\n%{http_code}', `http://${vip}/`], { timeoutMs: 10_000 });
  const lines = r.stdout.trimEnd().split('\n');
  return { code: Number(lines.pop()), body: lines.join('\n'), err: r.stderr };
}

test('client → service with a sandwiched waypoint: through the waypoint (PROXY v2 with identity and service), then to the backend', { skip: needsRoot }, async () => {
  const before = { waypoint: hboneFromClientTo('waypoint'), backend: hboneFromClientTo('backend') };
  const r = await curl('echo.default.svc.cluster.local', '10.96.0.30');
  assert.equal(r.code, 200, r.err);
  const body = JSON.parse(r.body) as { from: string; xClientSrc: string; host: string };
  // haproxy learnt the client from the PROXY header; the backend was reached by the waypoint.
  assert.equal(body.xClientSrc, pod('client').ip4);
  assert.equal(body.from, pod('waypoint').ip4, 'the backend is reached from the waypoint pod');
  const h = must(headers.get('waypoint')?.at(-1), 'a PROXY header');
  assert.match(h.src, new RegExp(`^${pod('client').ip4.replaceAll('.', '\\.')}:\\d+$`));
  assert.equal(h.dst, '10.96.0.30:80');
  assert.equal(h.identity, 'spiffe://cluster.local/ns/default/sa/default');
  assert.equal(h.service, 'echo.default.svc.cluster.local');
  // The bytes went client → waypoint over HBONE, never client → backend.
  assert.ok(hboneFromClientTo('waypoint') > before.waypoint, 'HBONE from the client to the waypoint pod');
  assert.equal(hboneFromClientTo('backend'), before.backend, 'nothing from the client straight to the backend');
  // As ztunnel reports it: the waypoint is the destination workload, the service the one addressed.
  const metrics = await (await fetch(`http://127.0.0.1:${must(apps[0], 'app0').admin.ports.stats}/metrics`)).text();
  assert.match(metrics, /istio_tcp_connections_opened_total\{reporter="source"[^}]*destination_service="echo.default.svc.cluster.local"[^}]*destination_workload="waypoint"[^}]*destination_principal="spiffe:\/\/cluster.local\/ns\/default\/sa\/waypoint"/);
});

test('the waypoint\'s own outbound to a workload it serves does not loop back to it', { skip: needsRoot }, async () => {
  const seen = headers.get('waypoint')?.length ?? 0;
  const r = await curl('echo.default.svc.cluster.local', '10.96.0.30');
  assert.equal(r.code, 200, r.err);
  // One header per client request: the waypoint → backend leg did not come back through the tunnel.
  assert.equal(headers.get('waypoint')?.length, seen + 1);
});

test('weighted waypoints split new connections by weight; weight 0 is never chosen', { skip: needsRoot }, async () => {
  const N = 200;
  const r = await pod('client').exec('bash', ['-c', `for i in $(seq ${N}); do exec 3<>/dev/tcp/10.96.0.33/80 || exit 7; head -n1 <&3; exec 3<&-; done`], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  const counts: Record<string, number> = {};
  for (const l of r.stdout.trim().split('\n')) counts[l] = (counts[l] ?? 0) + 1;
  assert.equal((counts['canary-a'] ?? 0) + (counts['canary-b'] ?? 0), N, JSON.stringify(counts));
  assert.equal(counts['canary-c'], undefined, 'weight 0 never chosen');
  // 3:1 → 150 expected for canary-a; ±25 is about four standard deviations.
  assert.ok(Math.abs((counts['canary-a'] ?? 0) - 150) <= 25, JSON.stringify(counts));
  assert.equal(headers.get('canary-a')?.at(-1)?.service, 'split.default.svc.cluster.local');
});

test('a waypoint that resolves to nothing fails the connection, counted, and never bypasses it', { skip: needsRoot }, async () => {
  const reached = backendSaw.length;
  const r = await curl('lost.default.svc.cluster.local', '10.96.0.34');
  assert.notEqual(r.code, 200);
  assert.equal(backendSaw.length, reached, 'the backend was not reached directly');
  const metrics = await (await fetch(`http://127.0.0.1:${must(apps[0], 'app0').admin.ports.stats}/metrics`)).text();
  assert.match(metrics, /istio_tcp_connections_failed_total\{[^}]*destination_service="lost.default.svc.cluster.local"[^}]*response_flags="CONNECT"[^}]*\} [1-9]/);
});
