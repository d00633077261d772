// SPDX-License-Identifier: Apache-2.0
// The same-node kernel fast path on the lab: enrolled pods on one node reach
// each other (by pod IP or service) without Skein's userspace — connect4
// applies the destination's policy for the source's enrolled identity and
// approves the flow, the destination's sk_lookup hands it to the app's
// listener past istio-cni's capture; the bytes take the kernel's TCP path
// between the pods, as without a mesh. Cross-node traffic still goes over
// HBONE; a pod that fakes what it can (marks, addresses) still meets the
// destination's capture.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { startApp, type App } from '@skein/ztunnel-compat/app';
import { parseConfig } from '@skein/ztunnel-compat/config';
import { createLogger } from '@skein/ztunnel-compat/log';
import { ProxyStateUpdater } from '@skein/ztunnel-compat/state/updater';
import { policyResource } from '@skein/ztunnel-compat/state/testing';
import { CniDouble } from '../cni/cni-double.ts';
import { Lab, type LabNode, type LabPod } from '../lab/index.ts';
import { ebpfObject, kernelFastpath, root, skipUnless } from '../skips.ts';
import { bulkClientScript, bulkPeerScript, captured, forwarded, must } from './lab-helpers.ts';
import { until } from './until.ts';

// The daemon mounts bpffs itself where none is; the kernel must have the rest.
const why = skipUnless(root('lab namespaces, eBPF'), ebpfObject(), kernelFastpath('same-node'));
const quiet = createLogger('error', 'json', fs.createWriteStream('/dev/null'));
let accessLog = '';
const VIP = '10.96.0.60';

let lab: Lab | undefined;
const apps: App[] = [];
const cnis: CniDouble[] = [];

const pod = (name: string): LabPod => must(lab, 'lab').pod(name);
const node = (i: number): LabNode => must(must(lab, 'lab').nodes[i], `node${i}`);
const app0 = (): App => must(apps[0], 'app0');

async function metrics(a: App): Promise<string> {
  return (await fetch(`http://127.0.0.1:${a.admin.ports.stats}/metrics`)).text();
}
function counter(m: string, action: string): number {
  return Number(new RegExp(`skein_kernel_connects_total\\{action="${action}"\\} (\\d+)`).exec(m)?.[1] ?? -1);
}
async function ask(from: LabPod, ip: string, port: number): Promise<{ ok: boolean; out: string; code: number | null }> {
  const r = await from.exec('bash', ['-c', `exec 3<>/dev/tcp/${ip}/${port} || exit 7; echo ping >&3; head -n1 <&3`], { timeoutMs: 8000 });
  return { ok: r.code === 0 && r.stdout.startsWith('pong'), out: r.stdout + r.stderr, code: r.code };
}

before(async () => {
  if (why !== false) return;
  lab = Lab.create({ nodes: [
    { pods: [{ name: 'client', serviceAccount: 'client' }, { name: 'server', serviceAccount: 'server' }, { name: 'blocked', serviceAccount: 'blocked' }, { name: 'faker', serviceAccount: 'faker' }] },
    { pods: [{ name: 'remote', serviceAccount: 'remote' }] },
  ] });
  const w = (p: LabPod, extra = ''): string => `- {uid: Kubernetes//Pod/${p.namespace}/${p.name}, name: ${p.name}, namespace: ${p.namespace}, trustDomain: cluster.local, serviceAccount: ${p.serviceAccount}, workloadIps: ["${p.ip4}"], protocol: HBONE, node: ${p.node.name}${extra}${extra.includes('services:') ? '' : ', services: {}'}}\n`;
  fs.writeFileSync(path.join(lab.dir, 'mesh.yaml'), `workloads:
${w(pod('client'))}${w(pod('server'), ', services: {default/echo.default.svc.cluster.local: {80: 8080}}')}${w(pod('blocked'))}${w(pod('remote'))}services:
- {name: echo, namespace: default, hostname: echo.default.svc.cluster.local, vips: ["/${VIP}"], ports: {80: 8080}}
`);
  // The apps run inside their pods (their sockets belong to the pod's cgroup,
  // as a real pod's do): a line in, "pong from <name> <peer> <local port>"
  // back; and a bulk peer on 9090.
  for (const name of ['server', 'remote']) {
    const p = pod(name);
    p.spawn('python3', ['-c', `
import socket
def pong():
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); srv.bind(("${p.ip4}", 8080)); srv.listen(64)
    while True:
        c, (peer, _) = srv.accept(); c.recv(100); c.sendall(f"pong from ${name} {peer} {c.getsockname()[1]}\\n".encode()); c.close()
pong()
`], { stdio: 'ignore' });
    p.spawn('python3', ['-c', bulkPeerScript(p.ip4, 9090)], { stdio: 'ignore' });
    await until(`${name} listening`, () => { const l = p.run('ss', '-Hltn'); return l.includes(':8080') && l.includes(':9090'); });
  }
  for (const [i, n] of [node(0), node(1)].entries()) {
    const cni = new CniDouble(n, CniDouble.socketPathFor(lab.dir, n));
    cnis.push(cni);
    accessLog = path.join(lab.dir, 'node0-access.log');
    const log = i === 0 ? createLogger('info', 'json', fs.createWriteStream(accessLog)) : quiet;
    apps.push(await startApp(parseConfig({
      XDS_ADDRESS: '', LOCAL_XDS_PATH: path.join(lab.dir, 'mesh.yaml'), FAKE_CA: 'true', SKEIN_LOCAL_CA_DIR: path.join(lab.dir, 'ca'),
      NODE_NAME: `node${i}`, INPOD_UDS: cni.zds.path, IPV6_ENABLED: 'false', SKEIN_CGROUP_PATH: lab.cgroupDir,
      SKEIN_BPFFS_DIR: `/sys/fs/bpf/skein-test-${process.pid}/node${i}`,
    }), log, { ports: { admin: 0, stats: 0, readiness: 0 } }));
    await cni.zds.waitReady();
  }
  // 'faker' stays out of the mesh: nothing of ours approves its flows.
  for (const p of ['client', 'server', 'blocked']) await must(cnis[0], 'cni0').enroll(pod(p));
  await must(cnis[1], 'cni1').enroll(pod('remote'));
  await until('same-node destinations in the kernel', () => {
    const d = app0().configDump() as { kernelFastpaths: { maps: { sameNodeDestinations?: number } } };
    return d.kernelFastpaths.maps.sameNodeDestinations === 3;
  });
});

after(async () => {
  for (const a of apps) await a.shutdown({ cleanupKernel: true, drainMs: 0 });
  fs.rmSync(`/sys/fs/bpf/skein-test-${process.pid}`, { recursive: true, force: true });
  for (const c of cnis) c.close();
  lab?.teardown();
});

test('same-node pod → service: the kernel connects the pods; neither capture nor Skein\'s userspace sees it', { skip: why }, async () => {
  const before = { out: captured(pod('client'), 'ISTIO_OUTPUT', 15001), in: captured(pod('server'), 'ISTIO_PRERT', 15006), m: await metrics(app0()) };
  // The client asks its socket whom it reached; the server app says who called and on which port.
  const r = await pod('client').exec('python3', ['-c', `
import socket
s = socket.create_connection(("${VIP}", 80)); s.sendall(b"ping\\n")
print(*s.getpeername(), s.makefile().readline().strip())`], { timeoutMs: 8000 });
  // As through a proxy: the client sees the service it dialled, the app the
  // client pod's address and its own port (not the capture port istio-cni's
  // REDIRECT wrote into the SYN).
  assert.equal(r.stdout.trim(), `${VIP} 80 pong from server ${pod('client').ip4} 8080`, r.stderr);
  assert.equal(captured(pod('client'), 'ISTIO_OUTPUT', 15001), before.out, 'nothing redirected to 15001');
  const m = await metrics(app0());
  assert.equal(counter(m, 'same_node'), counter(before.m, 'same_node') + 1);
  assert.equal(counter(m, 'same_node_admitted'), counter(before.m, 'same_node_admitted') + 1, 'the destination\'s sk_lookup admitted it');
});

/** node0's access-log lines written while `fn` ran. */
async function accessLines(fn: () => Promise<void>): Promise<Record<string, unknown>[]> {
  const from = fs.statSync(accessLog).size;
  await fn();
  await new Promise((r) => setTimeout(r, 300));
  return fs.readFileSync(accessLog, 'utf8').slice(from).split('\n').filter((l) => l.includes('"scope":"access"')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

test('same-node pod → pod IP: 32 MiB one way and 8 MiB back arrive intact, half-close included; only the kernel reports the flow', { skip: why }, async () => {
  const before = counter(await metrics(app0()), 'same_node_admitted');
  let r: { code: number | null; stdout: string; stderr: string } = { code: null, stdout: '', stderr: '' };
  const lines = await accessLines(async () => {
    r = await pod('client').exec('python3', ['-c', bulkClientScript(pod('server').ip4, 9090, false)], { timeoutMs: 60_000 });
  });
  assert.equal(r.stdout.trim(), 'True True True', r.stderr);
  assert.equal(counter(await metrics(app0()), 'same_node_admitted'), before + 1, 'the fast path carried it');
  // Skein's userspace saw nothing: every access-log line is the kernel's, for both reporters' flow.
  assert.ok(lines.length > 0, 'the kernel flow was logged');
  for (const l of lines) assert.equal(l.fastpath, 'same-node', JSON.stringify(l));
  assert.match(await metrics(app0()), /istio_tcp_received_bytes_total\{reporter="destination",source_workload="client"[^}]*source_principal="spiffe:\/\/cluster.local\/ns\/default\/sa\/client"[^}]*destination_workload="server"[^}]*connection_security_policy="unknown"[^}]*\} [1-9]/);
});

test('a DENY for the source\'s identity makes the connect fail at once and closes its open fast-path connections; removing it allows the next one', { skip: why }, async () => {
  // The state change istiod's ADS stream would make (the control-plane tests cover that stream).
  const updater = new ProxyStateUpdater(app0().state).authorizationHandler;
  const rejected = updater.handle([policyResource({
    name: 'deny-blocked', namespace: 'default', scope: 1, action: 1,
    rules: [{ clauses: [{ matches: [{ principals: [{ exact: 'cluster.local/ns/default/sa/blocked' }] }] }] }],
  })], []);
  assert.deepEqual(rejected, []);
  await new Promise((r) => setTimeout(r, 100));
  const t0 = Date.now();
  const denied = await ask(pod('blocked'), pod('server').ip4, 8080);
  assert.equal(denied.ok, false);
  assert.match(denied.out, /Operation not permitted/, 'connect() itself failed (EPERM), before any packet');
  assert.ok(Date.now() - t0 < 2000);
  assert.ok(counter(await metrics(app0()), 'denied') >= 1);
  // Others are not affected.
  assert.ok((await ask(pod('client'), pod('server').ip4, 8080)).ok);
  updater.handle([], ['default/deny-blocked']);
  await new Promise((r) => setTimeout(r, 100));
  // An open fast-path connection from 'blocked', then the DENY again: the connection is closed.
  const open = pod('blocked').exec('python3', ['-c', `
import socket, time
s = socket.create_connection(("${pod('server').ip4}", 9090)); s.sendall(b"x" * 1000); t0 = time.time()
try:
    while time.time() - t0 < 8:
        s.sendall(b"x" * 1000); time.sleep(0.05)
    print("still open")
except OSError as e:
    print("closed", e.errno)`], { timeoutMs: 15_000 });
  await new Promise((r) => setTimeout(r, 500));
  updater.handle([policyResource({
    name: 'deny-blocked', namespace: 'default', scope: 1, action: 1,
    rules: [{ clauses: [{ matches: [{ principals: [{ exact: 'cluster.local/ns/default/sa/blocked' }] }] }] }],
  })], []);
  const revoked = await open;
  assert.match(revoked.stdout, /^closed/, `${revoked.stdout}${revoked.stderr}`);
  updater.handle([], ['default/deny-blocked']);
  await new Promise((r) => setTimeout(r, 100));
  const allowed = await ask(pod('blocked'), pod('server').ip4, 8080);
  assert.match(allowed.out.trim(), new RegExp(`^pong from server ${pod('blocked').ip4.replaceAll('.', '\\.')} `));
});

test('a dual-stack [::] listener (Node\'s and Java\'s default) takes the fast path too', { skip: why }, async () => {
  pod('server').spawn('python3', ['-c', `
import socket
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("::", 8081)); s.listen(8)
while True:
    c, peer = s.accept(); c.recv(100); c.sendall(f"dual {peer[0]}\\n".encode()); c.close()`], { stdio: 'ignore' });
  await until('dual-stack listener', () => pod('server').run('ss', '-Hltn').includes(':8081'));
  const before = await metrics(app0());
  const r = await pod('client').exec('bash', ['-c', `exec 3<>/dev/tcp/${pod('server').ip4}/8081 || exit 7; echo hi >&3; head -n1 <&3`], { timeoutMs: 8000 });
  assert.equal(r.stdout.trim(), `dual ::ffff:${pod('client').ip4}`, r.stderr);
  const m = await metrics(app0());
  assert.equal(counter(m, 'same_node_admitted'), counter(before, 'same_node_admitted') + 1);
});

test('a listener bound to the pod\'s loopback stays private: the fast path does not hand it other pods\' flows', { skip: why }, async () => {
  pod('server').spawn('python3', ['-c', `
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", 7070)); s.listen(8)
while True:
    c, _ = s.accept(); c.sendall(b"secret\\n"); c.close()`], { stdio: 'ignore' });
  await until('loopback listener', () => pod('server').run('ss', '-Hltn').includes('127.0.0.1:7070'));
  const before = counter(await metrics(app0()), 'same_node');
  const r = await pod('client').exec('bash', ['-c', `exec 3<>/dev/tcp/${pod('server').ip4}/7070 && head -n1 <&3`], { timeoutMs: 8000 });
  assert.doesNotMatch(r.stdout, /secret/);
  assert.equal(counter(await metrics(app0()), 'same_node'), before, 'not approved for the kernel path');
});

test('the same pods across nodes still use HBONE', { skip: why }, async () => {
  node(1).run('iptables', '-t', 'mangle', '-A', 'FORWARD', '-d', pod('remote').ip4, '-p', 'tcp', '--dport', '15008');
  const r = await ask(pod('client'), pod('remote').ip4, 8080);
  // Over HBONE, Skein connects to the app's own port.
  assert.equal(r.out.trim(), `pong from remote ${pod('client').ip4} 8080`);
  assert.ok(forwarded(node(1), pod('remote').ip4, 15008) > 0, 'HBONE to the remote pod\'s 15008');
});

test('a connect sharing a fast-path flow\'s client port goes where it is addressed, not to the approved pod', { skip: why }, async () => {
  // Linux lets connects to different destinations share an ephemeral port;
  // here both are bound to one port so the sharing is certain. The first is
  // approved for the server pod; the second, to a pod on the other node,
  // meets the client's own outbound capture (15001) and must reach it
  // there, at once (a SYN handed to the wrong listener shows as a
  // retransmission, a second or more late).
  const before = await metrics(app0());
  const r = await pod('client').exec('python3', ['-c', `
import socket, time
def dial(port, ip, dport):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.settimeout(5)
    s.bind(("${pod('client').ip4}", port)); t = time.monotonic(); s.connect((ip, dport))
    return s, round((time.monotonic() - t) * 1000)
fast, _ = dial(0, "${pod('server').ip4}", 8080)
port = fast.getsockname()[1]
other, took = dial(port, "${pod('remote').ip4}", 8080)
other.sendall(b"ping\\n"); print(other.recv(100).decode().strip(), "|", took)
fast.sendall(b"ping\\n"); print(fast.recv(100).decode().strip(), "|", port)`], { timeoutMs: 15_000 });
  const [other, fast] = r.stdout.trim().split('\n').map((l) => l.split(' | '));
  assert.equal(other?.[0], `pong from remote ${pod('client').ip4} 8080`, r.stdout + r.stderr);
  assert.ok(Number(other[1]) < 900, `the shared-port connect took ${other[1]} ms`);
  assert.equal(fast?.[0], `pong from server ${pod('client').ip4} 8080`, r.stdout + r.stderr);
  const m = await metrics(app0());
  assert.equal(counter(m, 'same_node_admitted'), counter(before, 'same_node_admitted') + 1, 'the approved flow still took the kernel path');
});

test('a pod faking the mark, TOS and another pod\'s address does not skip the destination\'s capture', { skip: why }, async () => {
  const before = { admitted: counter(await metrics(app0()), 'same_node_admitted'), captured: captured(pod('server'), 'ISTIO_PRERT', 15006) };
  let r: { code: number | null; stdout: string; stderr: string } = { code: null, stdout: '', stderr: '' };
  const lines = await accessLines(async () => {
    r = await pod('faker').exec('python3', ['-c', `
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, 36, 0x539)   # SO_MARK: istio-cni's "node proxy" mark
s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x10)
s.connect(("${pod('server').ip4}", 8080)); s.sendall(b"ping\\n"); print(s.recv(100).decode().strip())
t = socket.socket(); t.setsockopt(socket.SOL_IP, 15, 1)   # IP_FREEBIND: claim the client pod's address
t.bind(("${pod('client').ip4}", 0)); t.settimeout(3)
try:
    t.connect(("${pod('server').ip4}", 8080)); print("spoofed connected")
except OSError as e:
    print("spoofed refused", e.errno)`], { timeoutMs: 15_000 });
  });
  assert.match(r.stdout, new RegExp(`pong from server ${pod('faker').ip4.replaceAll('.', '\\.')}`), r.stderr);
  assert.equal(counter(await metrics(app0()), 'same_node_admitted'), before.admitted, 'sk_lookup admitted none of these');
  assert.ok(captured(pod('server'), 'ISTIO_PRERT', 15006) > before.captured, 'istio-cni captured them');
  assert.ok(lines.some((l) => l.direction === 'inbound' && l.fastpath === undefined && l['src.addr'] !== undefined && typeof l['src.addr'] === 'string' && l['src.addr'].startsWith(pod('faker').ip4)), 'Skein\'s userspace inbound took the faker\'s connection');
});
