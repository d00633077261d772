// SPDX-License-Identifier: Apache-2.0
// The drop-in data path end to end on the lab: two nodes, a Skein daemon per
// node (in-process, static config, one shared local CA), istio-cni's double
// enrolling pods over ZDS with its real in-pod rules. Traffic is sent by real
// processes inside pods.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type net from 'node:net';
import path from 'node:path';
import http2 from 'node:http2';
import { after, before, test } from 'node:test';
import tls from 'node:tls';
import { connectTcp, listenTcp } from '@skein/bpf';
import type { WorkloadCertificate } from '@skein/ztunnel-compat/identity/certificate';
import { LocalCa } from '@skein/ztunnel-compat/identity/local-ca';
import { startApp, type App } from '@skein/ztunnel-compat/app';
import { parseConfig } from '@skein/ztunnel-compat/config';
import { createLogger } from '@skein/ztunnel-compat/log';
import { ProxyStateUpdater } from '@skein/ztunnel-compat/state/updater';
import { WORKLOAD_MANAGER_METRICS } from '../compat/ztunnel-facts.ts';
import { CniDouble } from '../cni/cni-double.ts';
import { Lab, type LabNode, type LabPod } from '../lab/index.ts';
import { hboneEngineMode, kernelMode } from './kernel-mode.ts';
import { bulkClientScript, bulkPeerScript } from './lab-helpers.ts';
import { until } from './until.ts';

const needsRoot = process.getuid?.() === 0 ? false : 'needs root (lab namespaces, iptables)';
const quiet = createLogger('error', 'json', fs.createWriteStream('/dev/null'));

let lab: Lab | undefined;
const apps: App[] = [];
const cnis: CniDouble[] = [];
const servers: net.Server[] = [];
/** What the app in the server pod saw: the client address of each connection. */
const seenBy = new Map<string, string[]>();

function must<T>(x: T | undefined, what: string): T {
  if (x === undefined) throw new Error(`${what} missing`);
  return x;
}
const pod = (name: string): LabPod => must(lab, 'lab').pod(name);
const node = (i: number): LabNode => must(must(lab, 'lab').nodes[i], `node${i}`);

/** The Prometheus text of node `i`'s daemon. */
async function scrape(i: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${must(apps[i], `app${i}`).admin.ports.stats}/metrics`)).text();
}

/** The sum of the samples whose line matches `series` (0 when none does). */
function sum(text: string, series: RegExp): number {
  return text.split('\n').filter((l) => series.test(l)).reduce((acc, l) => acc + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

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
  return `workloads:
${w(pod('client'), 'node0')}${w(pod('blocked'), 'node0')}${w(pod('server'), 'node1', '  services:\n    default/echo.default.svc.cluster.local: {80: 8080}\n')}${w(pod('local'), 'node0')}${w(pod('stranger'), 'node0')}${w(pod('reader'), 'node0')}${w(pod('guarded'), 'node1', '  authorizationPolicies: [default/only-client]\n')}
services:
- {name: echo, namespace: default, hostname: echo.default.svc.cluster.local, vips: ["/10.96.0.10"], ports: {80: 8080}}
policies:
- name: deny-blocked
  namespace: default
  scope: Namespace
  action: Deny
  rules: [[[{principals: [{Exact: cluster.local/ns/default/sa/blocked}]}]]]
- name: deny-other-namespace
  namespace: default
  scope: Namespace
  action: Deny
  rules: [[[{namespaces: [{Exact: other}]}]]]
- name: only-client
  namespace: default
  scope: WorkloadSelector
  action: Allow
  rules: [[[{principals: [{Exact: cluster.local/ns/default/sa/default}]}]]]
`;
}

/** A one-line request from a process in `from`; returns the reply (or the error). */
async function ask(from: LabPod, ip: string, port: number): Promise<{ ok: boolean; out: string }> {
  const r = await from.exec('bash', ['-c', `exec 3<>/dev/tcp/${ip}/${port} || exit 7; echo ping >&3; head -n1 <&3`], { timeoutMs: 8000 });
  return { ok: r.code === 0 && r.stdout.startsWith('pong'), out: r.stdout + r.stderr };
}

/** iptables counters in a node's FORWARD path for traffic to a pod port. */
function forwarded(n: LabNode, ip: string, port: number): number {
  const out = n.run('iptables', '-t', 'mangle', '-L', 'FORWARD', '-v', '-n', '-x');
  const line = out.split('\n').find((l) => l.includes(ip) && l.includes(`dpt:${port}`));
  return line === undefined ? -1 : Number(line.trim().split(/\s+/)[0]);
}

before(async () => {
  if (needsRoot) return;
  lab = Lab.create({ nodes: [
    { pods: [{ name: 'client' }, { name: 'blocked', serviceAccount: 'blocked' }, { name: 'local' }, { name: 'stranger', namespace: 'other' }, { name: 'reader', serviceAccount: 'reader' }] },
    { pods: [{ name: 'server' }, { name: 'outside' }, { name: 'guarded' }] },
  ] });
  fs.writeFileSync(path.join(lab.dir, 'mesh.yaml'), staticConfig());
  // Count what crosses node1 towards the server pod, by port.
  for (const port of [8080, 15008]) node(1).run('iptables', '-t', 'mangle', '-A', 'FORWARD', '-d', pod('server').ip4, '-p', 'tcp', '--dport', String(port));
  // The apps: an echo server in the server pod and in the non-mesh pod.
  // A server that answers only once the client has finished sending (FIN).
  servers.push(await listenTcp({ address: pod('server').ip4, port: 8081, netns: pod('server').netnsPath, allowHalfOpen: true }, (s) => {
    let n = 0;
    s.on('data', (d: Buffer) => { n += d.length; });
    s.once('end', () => { s.end(`got ${n} bytes\n`); });
    s.on('error', () => undefined);
  }));
  for (const name of ['server', 'outside', 'local', 'guarded']) {
    const p = pod(name);
    seenBy.set(name, []);
    servers.push(await listenTcp({ address: p.ip4, port: 8080, netns: p.netnsPath }, (s) => {
      seenBy.get(name)?.push(s.remoteAddress ?? '');
      s.once('data', () => { s.end(`pong from ${name}\n`); });
      s.on('error', () => undefined);
    }));
  }
  for (const [i, n] of [node(0), node(1)].entries()) {
    const cni = new CniDouble(n, CniDouble.socketPathFor(lab.dir, n));
    cnis.push(cni);
    apps.push(await startApp(parseConfig({
      XDS_ADDRESS: '', LOCAL_XDS_PATH: path.join(lab.dir, 'mesh.yaml'), FAKE_CA: 'true', SKEIN_LOCAL_CA_DIR: path.join(lab.dir, 'ca'),
      NODE_NAME: `node${i}`, INPOD_UDS: cni.zds.path, IPV6_ENABLED: 'false', SKEIN_KERNEL_FASTPATH: kernelMode(),
      SKEIN_HBONE_ENGINE: hboneEngineMode(),
    }), quiet, { ports: { admin: 0, stats: 0, readiness: 0 } }));
    await cni.zds.waitReady();
  }
  await must(cnis[0], 'cni0').enroll(pod('client'));
  await must(cnis[0], 'cni0').enroll(pod('blocked'));
  await must(cnis[0], 'cni0').enroll(pod('local'));
  await must(cnis[0], 'cni0').enroll(pod('stranger'));
  await must(cnis[0], 'cni0').enroll(pod('reader'));
  await must(cnis[1], 'cni1').enroll(pod('server'));
  await must(cnis[1], 'cni1').enroll(pod('guarded'));
});

after(async () => {
  for (const a of apps) await a.shutdown({ cleanupKernel: true });
  for (const c of cnis) c.close();
  for (const s of servers) s.close();
  lab?.teardown();
});

test('pod → pod IP on another node goes over HBONE; the server sees the client pod IP', { skip: needsRoot }, async () => {
  const before = { plain: forwarded(node(1), pod('server').ip4, 8080), hbone: forwarded(node(1), pod('server').ip4, 15008) };
  const r = await ask(pod('client'), pod('server').ip4, 8080);
  assert.ok(r.ok, r.out);
  assert.equal(r.out.trim(), 'pong from server');
  assert.equal(seenBy.get('server')?.at(-1), pod('client').ip4, 'the app sees the original client IP');
  assert.equal(forwarded(node(1), pod('server').ip4, 8080), before.plain, 'nothing crossed the node to port 8080 in plaintext');
  assert.ok(forwarded(node(1), pod('server').ip4, 15008) > before.hbone, 'the bytes crossed as HBONE to 15008');
});

test("the proxy's own connection to the app is not a kernel flow: node1 reports an HBONE connection once, as its destination", { skip: needsRoot }, async () => {
  // The inbound proxy dials the app from inside the server pod's netns, so
  // the kernel's connect hook sees the server pod dialling itself. It must
  // leave the proxy's (marked) sockets alone, or every tunnelled connection
  // would also be counted as a same-node flow of the server pod.
  const before = await scrape(1);
  const r = await ask(pod('client'), pod('server').ip4, 8080);
  assert.ok(r.ok, r.out);
  const closed = /^istio_tcp_connections_closed_total\{reporter="destination"[^}]*source_workload="client"[^}]*destination_workload="server"/;
  await until('node1 reports the connection closed', async () => sum(await scrape(1), closed) > sum(before, closed), 5000);
  const after = await scrape(1);
  const sameNode = /^skein_kernel_connects_total\{action="same_node"\}/;
  assert.equal(sum(after, sameNode), sum(before, sameNode), 'no connect was taken for the same-node fast path');
  const asSource = /^istio_tcp_connections_opened_total\{reporter="source"/;
  assert.equal(sum(after, asSource), sum(before, asSource), 'node1 opened nothing as a source');
  // The pod IP was dialled, yet the destination is labelled with the pod's service, as ztunnel does
  // (its guess_inbound_service: the server is echo's endpoint, and 8080 is echo's target port).
  assert.ok(sum(after, /^istio_tcp_connections_closed_total\{reporter="destination"[^}]*source_workload="client"[^}]*destination_service="echo\.default\.svc\.cluster\.local"[^}]*destination_workload="server"/) > 0);
});

test('a client that half-closes still gets the reply through both proxies', { skip: needsRoot }, async () => {
  const script = `import socket; s=socket.create_connection(("${pod('server').ip4}", 8081)); s.sendall(b"x"*100000); s.shutdown(socket.SHUT_WR); print(s.makefile().readline().strip())`;
  const r = await pod('client').exec('python3', ['-c', script], { timeoutMs: 10_000 });
  assert.equal(r.stdout.trim(), 'got 100000 bytes', r.stderr);
});

test('pod → service VIP on another node: only TLS to 15008 crosses the node; the endpoint sees the client pod IP', { skip: needsRoot }, async () => {
  const before = { plain: forwarded(node(1), pod('server').ip4, 8080), hbone: forwarded(node(1), pod('server').ip4, 15008) };
  const r = await ask(pod('client'), '10.96.0.10', 80);
  assert.ok(r.ok, r.out);
  assert.equal(r.out.trim(), 'pong from server');
  assert.equal(seenBy.get('server')?.at(-1), pod('client').ip4);
  assert.equal(forwarded(node(1), pod('server').ip4, 8080), before.plain, 'no plaintext to the endpoint crossed the node');
  assert.ok(forwarded(node(1), pod('server').ip4, 15008) > before.hbone, 'HBONE to 15008 did');
});

test('pod → pod on the same node works', { skip: needsRoot }, async () => {
  const r = await ask(pod('client'), pod('local').ip4, 8080);
  assert.ok(r.ok, r.out);
  assert.equal(seenBy.get('local')?.at(-1), pod('client').ip4);
});

test('a pod reaching itself through its own service VIP (hairpin) gets its own app, seen from its own IP', { skip: needsRoot }, async () => {
  const r = await ask(pod('server'), '10.96.0.10', 80);
  assert.ok(r.ok, r.out);
  assert.equal(r.out.trim(), 'pong from server');
  assert.equal(seenBy.get('server')?.at(-1), pod('server').ip4);
});

test('concurrent bulk flows keep their bytes: two over HBONE to another node, one passed through as TCP, 32 MiB out and 8 MiB back each', { skip: needsRoot }, async () => {
  // The relays read into shared, reused buffers: three flows at once through
  // the same daemons would show any buffer handed back too early.
  const flows: [LabPod, number][] = [[pod('server'), 9091], [pod('server'), 9092], [pod('outside'), 9093]];
  for (const [p, port] of flows) {
    p.spawn('python3', ['-c', bulkPeerScript(p.ip4, port)], { stdio: 'ignore' });
    await until(`bulk peer on ${p.name}:${port}`, () => p.run('ss', '-Hltn').includes(`:${port}`));
  }
  const results = await Promise.all(flows.map(([p, port]) => pod('client').exec('python3', ['-c', bulkClientScript(p.ip4, port, false)], { timeoutMs: 60_000 })));
  for (const r of results) assert.equal(r.stdout.trim(), 'True True True', r.stderr);
});

test('pod → a non-mesh address is passed through as plain TCP', { skip: needsRoot }, async () => {
  const r = await ask(pod('client'), pod('outside').ip4, 8080);
  assert.ok(r.ok, r.out);
  assert.equal(seenBy.get('outside')?.at(-1), pod('client').ip4);
});

test('a DENY by principal at the destination fails the connection and is counted', { skip: needsRoot }, async () => {
  const r = await ask(pod('blocked'), pod('server').ip4, 8080);
  assert.equal(r.ok, false);
  const metrics = await (await fetch(`http://127.0.0.1:${must(apps[0], 'app0').admin.ports.stats}/metrics`)).text();
  assert.match(metrics, /istio_tcp_connections_failed_total\{[^}]*source_principal="spiffe:\/\/cluster.local\/ns\/default\/sa\/blocked"[^}]*response_flags="CONNECT"/);
  const server = await (await fetch(`http://127.0.0.1:${must(apps[1], 'app1').admin.ports.stats}/metrics`)).text();
  assert.match(server, /istio_tcp_connections_opened_total\{reporter="destination"[^}]*source_principal="spiffe:\/\/cluster.local\/ns\/default\/sa\/default"[^}]*connection_security_policy="mutual_tls"[^}]*\} [1-9]/);
});

test('a plaintext client on 15008 cannot open a stream', { skip: needsRoot }, async () => {
  const r = await pod('outside').exec('bash', ['-c', `exec 3<>/dev/tcp/${pod('server').ip4}/15008; printf 'PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n' >&3; timeout 2 cat <&3 | head -c 64 | od -c | head -3`], { timeoutMs: 8000 });
  assert.doesNotMatch(r.stdout, /HTTP\/2|\\0 004/, 'no HTTP/2 SETTINGS came back to a plaintext client');
});

test('a DENY by namespace at the destination fails the connection and is counted', { skip: needsRoot }, async () => {
  const r = await ask(pod('stranger'), pod('server').ip4, 8080);
  assert.equal(r.ok, false, r.out);
  const metrics = await (await fetch(`http://127.0.0.1:${must(apps[0], 'app0').admin.ports.stats}/metrics`)).text();
  assert.match(metrics, /istio_tcp_connections_failed_total\{[^}]*source_principal="spiffe:\/\/cluster.local\/ns\/other\/sa\/default"[^}]*response_flags="CONNECT"[^}]*\} [1-9]/);
});

test('an ALLOW-only policy admits the named principal and no other', { skip: needsRoot }, async () => {
  const allowed = await ask(pod('client'), pod('guarded').ip4, 8080);
  assert.ok(allowed.ok, allowed.out);
  assert.equal(allowed.out.trim(), 'pong from guarded');
  const refused = await ask(pod('reader'), pod('guarded').ip4, 8080);
  assert.equal(refused.ok, false, refused.out);
  // The same principal is not refused where no ALLOW policy applies.
  const elsewhere = await ask(pod('reader'), pod('server').ip4, 8080);
  assert.ok(elsewhere.ok, elsewhere.out);
});

/** Opens TLS + HTTP/2 to the server pod's 15008 from inside the non-mesh pod and sends one CONNECT; the status, or why there was none. */
async function connectFromOutside(cert: WorkloadCertificate | undefined): Promise<string> {
  const target = pod('server');
  const raw = connectTcp({ address: target.ip4, port: 15008, netns: pod('outside').netnsPath });
  const socket = tls.connect({
    socket: raw, ALPNProtocols: ['h2'], minVersion: 'TLSv1.3', rejectUnauthorized: false,
    ...(cert === undefined ? {} : { cert: [cert.leafPem, ...cert.chainPems].join('\n'), key: cert.keyPem }),
  });
  const session = http2.connect(`https://${target.ip4}:15008`, { createConnection: () => socket });
  try {
    return await new Promise<string>((resolve) => {
      session.once('error', (e: Error) => { resolve(`error: ${e.message}`); });
      const stream = session.request({ ':method': 'CONNECT', ':authority': `${target.ip4}:8080` });
      stream.once('response', (h) => { resolve(String(h[':status'])); });
      stream.once('error', (e: Error) => { resolve(`error: ${e.message}`); });
      stream.once('close', () => { resolve('closed without a response'); });
      setTimeout(() => { resolve('timed out'); }, 5000).unref();
    });
  } finally {
    session.destroy();
    raw.destroy();
  }
}

test('on 15008, a client without a certificate or from another trust domain gets no stream; a mesh client does', { skip: needsRoot }, async () => {
  const ca = await LocalCa.open({ dir: path.join(must(lab, 'lab').dir, 'ca') });
  const member = await ca.fetch({ trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'default' });
  const foreigner = await ca.fetch({ trustDomain: 'other.td', namespace: 'default', serviceAccount: 'default' });
  assert.equal(await connectFromOutside(member), '200', 'the control: a certificate of this trust domain is served');
  assert.notEqual(await connectFromOutside(undefined), '200');
  assert.notEqual(await connectFromOutside(foreigner), '200');
});

function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

test('two hundred connections along every path leave no file descriptor behind', { skip: needsRoot }, async () => {
  const paths: [LabPod, string, number, boolean][] = [
    [pod('client'), pod('server').ip4, 8080, true], // cross node
    [pod('client'), pod('local').ip4, 8080, true], // same node
    [pod('client'), pod('outside').ip4, 8080, true], // passthrough
    [pod('blocked'), pod('server').ip4, 8080, false], // denied
  ];
  // Warm the HBONE pools first: pooled connections are meant to outlive a request.
  for (const [from, ip, port] of paths) await ask(from, ip, port);
  await new Promise((r) => setTimeout(r, 200));
  // istio_tcp_sockets_open follows each pod socket to its end, wherever it was
  // carried (the engine, or a relay that re-opened it for pooled reads).
  const socketsOpen = async (): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${must(apps[0], 'app0').admin.ports.stats}/metrics`)).text();
    return Number(/^istio_tcp_sockets_open\{reporter="source"\} (\d+)$/m.exec(text)?.[1] ?? NaN);
  };
  const openBefore = await socketsOpen();
  const before = openFds();
  for (let round = 0; round < 50; round++) {
    const results = await Promise.all(paths.map(([from, ip, port]) => ask(from, ip, port)));
    assert.deepEqual(results.map((r) => r.ok), paths.map((p) => p[3]), `round ${round}`);
  }
  let now = openFds();
  await until(`fds back to ${before}`, () => (now = openFds()) <= before, 10_000).catch(() => undefined);
  // Fewer is fine: a pooled HBONE connection may have been replaced or released meanwhile.
  assert.ok(now <= before, `fds before ${before}, after ${now}`);
  let open = NaN;
  await until(`istio_tcp_sockets_open back to ${openBefore}`, async () => (open = await socketsOpen()) === openBefore, 10_000).catch(() => undefined);
  assert.equal(open, openBefore, 'no pod socket left counted as open');
});

// Last: it removes a pod from the mesh.
test('config_dump shows the enrolled pods; Del drains a pod', { skip: needsRoot }, async () => {
  const app0 = must(apps[0], 'app0');
  type Conn = { src: string; originalDst: string | null; actualDst: string; protocol: string };
  type Dump = { workloadState: Record<string, { state: string; info: { name: string }; connections: { inbound: Conn[]; outbound: Conn[] } }> };
  const dumpOf = async (a: App): Promise<Dump> => JSON.parse(await (await fetch(`http://127.0.0.1:${a.admin.ports.admin}/config_dump`)).text()) as Dump;
  // A connection held open from client to server is listed on both ends, as ztunnel lists it (istioctl ztunnel-config connections).
  const stateOf = (d: Dump, name: string) => Object.values(d.workloadState).find((s) => s.info.name === name);
  const held = pod('client').spawn('bash', ['-c', `exec 3<>/dev/tcp/${pod('server').ip4}/8080; sleep 20`], { stdio: 'ignore' });
  try {
    let out: Conn[] = [];
    await until('the held connection in the client pod\'s outbound list', async () => (out = stateOf(await dumpOf(app0), 'client')?.connections.outbound ?? []).length > 0, 10_000);
    assert.deepEqual(out.map((c) => [c.originalDst, c.actualDst, c.protocol]), [[`${pod('server').ip4}:8080`, `${pod('server').ip4}:15008`, 'HBONE']]);
    assert.match(out[0]?.src ?? '', new RegExp(`^${pod('client').ip4.replaceAll('.', '\\.')}:\\d+$`));
    const inbound = stateOf(await dumpOf(must(apps[1], 'app1')), 'server')?.connections.inbound ?? [];
    assert.ok(inbound.some((c) => c.actualDst === `${pod('server').ip4}:8080` && c.protocol === 'HBONE' && c.src.startsWith(`${pod('client').ip4}:`)), JSON.stringify(inbound));
  } finally {
    held.kill('SIGKILL');
  }
  const d = await dumpOf(app0);
  assert.deepEqual(Object.values(d.workloadState).map((s) => [s.info.name, s.state]).sort(), [['blocked', 'Up'], ['client', 'Up'], ['local', 'Up'], ['reader', 'Up'], ['stranger', 'Up']]);
  // The engine these tests ran on, and that it carried their tunnels.
  const engine = (d as unknown as { hboneEngine: { active: string; stats?: { sessionsOpened: number } } }).hboneEngine;
  assert.equal(engine.active, hboneEngineMode());
  if (engine.active === 'native') {
    assert.ok((engine.stats?.sessionsOpened ?? 0) > 0, 'the native engine opened the HBONE sessions');
    // node1's pods only answer: its sessions are the 15008 server's.
    const server = (await dumpOf(must(apps[1], 'app1')) as unknown as { hboneEngine: { stats?: { sessionsOpened: number } } }).hboneEngine;
    assert.ok((server.stats?.sessionsOpened ?? 0) > 0, 'the native engine served 15008');
  }
  assert.match(await scrape(0), new RegExp(`^skein_hbone_engine\\{engine="${hboneEngineMode()}"\\} 1$`, 'm'));
  const metric = async (name: string): Promise<number> => {
    const m = await (await fetch(`http://127.0.0.1:${app0.admin.ports.stats}/metrics`)).text();
    return Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(m)?.[1] ?? -1);
  };
  // ztunnel's workload manager metrics, under ztunnel's names (test/compat/ztunnel-facts.ts).
  const wm = WORKLOAD_MANAGER_METRICS;
  assert.deepEqual([await metric(wm.active), await metric(wm.pending)], [5, 0]);
  const stoppedBefore = await metric(wm.stopped);
  assert.ok(await metric(wm.started) >= 5);
  // An HBONE connection the pod holds when it leaves the mesh is ended (a FIN:
  // `cat` sees its end), as a drained ztunnel proxy ends its connections.
  const leaving = pod('local').spawn('bash', ['-c', `exec 3<>/dev/tcp/${pod('server').ip4}/8080; exec timeout 20 cat <&3`], { stdio: 'ignore' });
  const left = new Promise<number | null>((resolve) => { leaving.once('exit', (code) => { resolve(code); }); });
  try {
    await until('the leaving pod\'s connection in its outbound list', async () => (stateOf(await dumpOf(app0), 'local')?.connections.outbound.length ?? 0) > 0, 10_000);
    const t0 = Date.now();
    await must(cnis[0], 'cni0').unenroll(pod('local'));
    const code = await Promise.race([left, new Promise<string>((resolve) => { setTimeout(() => { resolve('still open after 5 s'); }, 5000); })]);
    assert.equal(code, 0, `the held connection ended with a FIN (${Date.now() - t0} ms after the Del)`);
  } finally {
    leaving.kill('SIGKILL');
  }
  assert.doesNotMatch(pod('local').run('ss', '-Hltn'), /:15008\b/);
  assert.equal(await metric(wm.active), 4);
  assert.equal(await metric(wm.stopped), stoppedBefore + 1);
});

// After the Del above: it takes 'blocked' out of node0's state, then out of the mesh.
test('a pod leaving (its workload out of xDS, then its Del) takes its identity\'s certificate and engine credential; a connection to it between the two brings neither back', { skip: needsRoot }, async () => {
  const app0 = must(apps[0], 'app0');
  // 'blocked' (its own service account) made HBONE connections from node0 above.
  assert.equal((await ask(pod('blocked'), pod('server').ip4, 8080)).ok, false);
  const uri = `spiffe://cluster.local/ns/${pod('blocked').namespace}/sa/blocked`;
  const held = (): boolean => (app0.configDump().certificates as { identity: string }[]).some((c) => c.identity === uri);
  const credentials = (): number | undefined => (app0.configDump().hboneEngine as { stats?: { credentials: number } }).stats?.credentials;
  assert.ok(held(), 'node0 holds the blocked identity\'s certificate');
  const before = credentials();
  if (hboneEngineMode() === 'js') assert.equal(before, undefined, 'the JavaScript path has no engine');
  else assert.ok(before !== undefined && before >= 2, `credentials on node0's engine: ${before}`);
  const updater = new ProxyStateUpdater(app0.state);
  assert.deepEqual(updater.addressHandler.handle([], [`Kubernetes//Pod/${pod('blocked').namespace}/blocked`]), []);
  // The pod is still enrolled: its 15008 serves node1's (stale) view with the same certificate.
  await ask(pod('server'), pod('blocked').ip4, 8080);
  assert.ok(held(), 'the enrolled pod still holds its certificate');
  await must(cnis[0], 'cni0').unenroll(pod('blocked'));
  await until('the blocked identity\'s certificate forgotten on node0', () => !held(), 5000);
  if (before !== undefined) assert.equal(credentials(), before - 1, 'its credential left the engine');
});
