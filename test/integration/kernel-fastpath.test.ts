// SPDX-License-Identifier: Apache-2.0
// The kernel fast path for no-tunnel destinations, end to end on the lab:
// `skein proxy` on node0 (a real process, so it can be killed), a client pod
// enrolled over ZDS, a service whose endpoints use no tunnel (protocol TCP,
// not enrolled). The kernel connects the client straight to an endpoint —
// istio-cni's capture rule and Skein's :15001 never see it — with
// decide/'s capacity weights, reports the flow as istio_tcp_* metrics, keeps
// steering while the daemon is dead, is adopted by the next daemon, and is
// removed by `skein proxy --cleanup`.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import type net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { listenTcp } from '@skein/bpf';
import { startDaemon, type Daemon } from '../bench/daemon.ts';
import { CniDouble } from '../cni/cni-double.ts';
import { withoutBpffs } from '../lab/bpffs.ts';
import { Lab, type LabNode, type LabPod } from '../lab/index.ts';
import { ebpfObject, kernelFastpath, root, skipUnless } from '../skips.ts';
import { bulkClientScript, bulkPeerScript, captured, must } from './lab-helpers.ts';
import { until } from './until.ts';

const MAIN = fileURLToPath(new URL('../../ztunnel-compat/src/main.ts', import.meta.url));
// The daemon mounts bpffs itself where none is; the kernel must have the rest.
const why = skipUnless(root('lab namespaces, eBPF'), ebpfObject(), kernelFastpath('same-node'));

const VIP = '10.96.0.50';
/** A service with one no-tunnel endpoint (db-1) for the bulk transfer. */
const BULK_VIP = '10.96.0.51';
let lab: Lab | undefined;
let cni: CniDouble | undefined;
let daemon: Daemon | undefined;
const servers: net.Server[] = [];
const bpffs = `/sys/fs/bpf/skein-test-${process.pid}`;

const pod = (name: string): LabPod => must(lab, 'lab').pod(name);
const node0 = (): LabNode => must(must(lab, 'lab').nodes[0], 'node0');

function env(mode: 'auto' | 'off'): NodeJS.ProcessEnv {
  const l = must(lab, 'lab');
  return {
    ...process.env, XDS_ADDRESS: '', LOCAL_XDS_PATH: path.join(l.dir, 'mesh.yaml'), FAKE_CA: 'true', SKEIN_LOCAL_CA_DIR: path.join(l.dir, 'ca'),
    NODE_NAME: 'node0', INPOD_UDS: must(cni, 'cni').zds.path, IPV6_ENABLED: 'false', RUST_LOG: 'info', LOG_FORMAT: 'json',
    SKEIN_KERNEL_FASTPATH: mode, SKEIN_BPFFS_DIR: bpffs, SKEIN_CGROUP_PATH: l.cgroupDir,
  };
}

/** `fresh`: in a mount namespace of its own with nothing on /sys/fs/bpf, as on a new machine. */
async function start(mode: 'auto' | 'off', fresh = false): Promise<void> {
  const cmd = fresh ? withoutBpffs(process.execPath, [MAIN, 'proxy']) : { cmd: process.execPath, args: [MAIN, 'proxy'] };
  daemon = await startDaemon(node0(), {
    ...cmd, ports: [15021], comm: 'MainThread', timeoutMs: 20_000, env: env(mode),
    logPath: path.join(must(lab, 'lab').dir, 'node0.log'),
  });
  await must(cni, 'cni').zds.waitReady(20_000);
  // After a restart the snapshot enrolls the client again.
  if (must(cni, 'cni').enrolled.size > 0) await until('client pod running', async () => /"state": *"Up"/.test(await configDump()), 10_000);
}

async function get(url: string): Promise<string> {
  // The daemon's admin and stats ports are on the node netns' loopback.
  const r = await node0().exec('curl', ['-sS', '-m', '5', url], { timeoutMs: 8000 });
  return r.stdout;
}
const configDump = (): Promise<string> => get('http://127.0.0.1:15000/config_dump');
const metrics = (): Promise<string> => get('http://127.0.0.1:15020/metrics');

/** Packets the client pod's istio-cni rule redirected to :15001. */
const capturedOut = (): number => captured(pod('client'), 'ISTIO_OUTPUT', 15001);

async function ask(): Promise<string> {
  const r = await pod('client').exec('bash', ['-c', `exec 3<>/dev/tcp/${VIP}/5432 || exit 7; echo hi >&3; head -n1 <&3`], { timeoutMs: 8000 });
  return r.code === 0 ? r.stdout.trim() : `error ${r.code}: ${r.stderr.trim()}`;
}

before(async () => {
  if (why !== false) return;
  lab = Lab.create({ nodes: [{ pods: [{ name: 'client' }, { name: 'local', serviceAccount: 'local' }] }, { pods: [{ name: 'db-0', namespace: 'data' }, { name: 'db-1', namespace: 'data' }] }] });
  const w = (p: LabPod, proto: string, extra = ''): string => `- {uid: Kubernetes//Pod/${p.namespace}/${p.name}, name: ${p.name}, namespace: ${p.namespace}, trustDomain: cluster.local, serviceAccount: ${p.serviceAccount}, workloadIps: ["${p.ip4}"], protocol: ${proto}, node: ${p.node.name}${extra}${extra.includes('services:') ? '' : ', services: {}'}}\n`;
  const member = 'data/db.data.svc.cluster.local: {5432: 15432}';
  fs.writeFileSync(path.join(lab.dir, 'mesh.yaml'), `workloads:\n${w(pod('client'), 'HBONE')}${w(pod('local'), 'HBONE')}${w(pod('db-0'), 'TCP', `, capacity: 1, services: {${member}}`)}\
${w(pod('db-1'), 'TCP', `, capacity: 3, services: {${member}, data/bulk.data.svc.cluster.local: {5433: 15433}}`)}services:
- {name: db, namespace: data, hostname: db.data.svc.cluster.local, vips: ["/${VIP}"], ports: {5432: 15432}}
- {name: bulk, namespace: data, hostname: bulk.data.svc.cluster.local, vips: ["/${BULK_VIP}"], ports: {5433: 15433}}\n`);
  for (const name of ['db-0', 'db-1']) {
    servers.push(await listenTcp({ address: pod(name).ip4, port: 15432, netns: pod(name).netnsPath }, (s) => {
      s.once('data', () => { s.end(`${name}\n`); });
      s.on('error', () => undefined);
    }));
  }
  // A bulk peer: hashes what it gets, then sends back 8 MiB of its own.
  pod('db-1').spawn('python3', ['-c', bulkPeerScript(pod('db-1').ip4, 15433)], { stdio: 'ignore' });
  await until('bulk peer listening', () => pod('db-1').run('ss', '-Hltn').includes(':15433'));
  // The same bulk peer in an enrolled pod on the client's node: the same-node fast path.
  pod('local').spawn('python3', ['-c', bulkPeerScript(pod('local').ip4, 15433)], { stdio: 'ignore' });
  await until('local bulk peer listening', () => pod('local').run('ss', '-Hltn').includes(':15433'));
  cni = new CniDouble(node0(), CniDouble.socketPathFor(lab.dir, node0()));
  await start('auto');
  await cni.enroll(pod('client'));
  await cni.enroll(pod('local'));
  await until('client pod running', async () => /"state": *"Up"/.test(await configDump()), 10_000);
});

after(async () => {
  await daemon?.stop();
  spawnSync(process.execPath, [MAIN, 'proxy', '--cleanup'], { env: { ...process.env, SKEIN_BPFFS_DIR: bpffs }, encoding: 'utf8' });
  cni?.close();
  for (const s of servers) s.close();
  lab?.teardown();
});

test('config_dump and metrics say the connect-time fast path is active', { skip: why }, async () => {
  const d = JSON.parse(await configDump()) as { kernelFastpaths: { paths: Record<string, { active: boolean; reason: string }>; maps: { pods: number; services: number; flows: number } } };
  assert.equal(d.kernelFastpaths.paths['connect-lb']?.active, true, JSON.stringify(d.kernelFastpaths));
  assert.equal(d.kernelFastpaths.paths['same-node']?.active, true);
  assert.equal(d.kernelFastpaths.maps.pods, 2);
  assert.equal(d.kernelFastpaths.maps.services, 2);
  assert.match(await metrics(), /skein_kernel_fastpath_active\{path="connect-lb"\} 1/);
  // The kernel-module path is reported too, off here: this kernel loads no modules.
  assert.match(d.kernelFastpaths.paths['kmod-hbone']?.reason ?? '', /^missing: the skein_hbone module/);
  assert.match(await metrics(), /skein_kernel_fastpath_active\{path="kmod-hbone"\} 0/);
});

test('pod → no-tunnel service: the kernel connects it to an endpoint; the capture and :15001 never see it', { skip: why }, async () => {
  const before = capturedOut();
  const answer = await ask();
  assert.match(answer, /^db-[01]$/);
  assert.equal(capturedOut(), before, 'istio-cni\'s rule redirected nothing to 15001');
  const closed = /istio_tcp_connections_closed_total\{reporter="source"[^}]*destination_service="db.data.svc.cluster.local"[^}]*connection_security_policy="unknown"[^}]*\} [1-9]/;
  await until('kernel telemetry', async () => closed.test(await metrics()), 5000).catch(() => undefined);
  const m = await metrics();
  assert.match(m, closed, `${m.split('\n').filter((l) => l.startsWith('istio_tcp') || l.startsWith('skein_')).join('\n')}\n${fs.readFileSync(path.join(must(lab, 'lab').dir, 'node0.log'), 'utf8').slice(-3000)}`);
  assert.match(m, /skein_kernel_connects_total\{action="load_balanced"\} [1-9]/);
  assert.match(m, /istio_tcp_received_bytes_total\{reporter="source"[^}]*source_workload="client"[^}]*destination_workload="db-[01]"[^}]*\} [1-9]/);
  const logged = fs.readFileSync(path.join(must(lab, 'lab').dir, 'node0.log'), 'utf8');
  assert.match(logged, /"fastpath":"connect-lb"[^\n]*"message":"connection complete"/);
});

test('a steered client still sees the service it dialled as its peer (getpeername), as through a proxy', { skip: why }, async () => {
  const before = capturedOut();
  const r = await pod('client').exec('python3', ['-c', `
import socket
s = socket.create_connection(("${VIP}", 5432)); s.sendall(b"hi\\n")
print(*s.getpeername(), s.makefile().readline().strip())`], { timeoutMs: 8000 });
  assert.match(r.stdout.trim(), new RegExp(`^${VIP.replaceAll('.', '\\.')} 5432 db-[01]$`), r.stderr);
  assert.equal(capturedOut(), before, 'the kernel steered it');
});

test('the kernel picks endpoints by capacity, as decide/ does (1:3 over 200 connects)', { skip: why }, async () => {
  const r = await pod('client').exec('bash', ['-c', `for i in $(seq 200); do exec 3<>/dev/tcp/${VIP}/5432 || exit 7; echo hi >&3; head -n1 <&3; exec 3<&-; done`], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  const counts: Record<string, number> = {};
  for (const l of r.stdout.trim().split('\n')) counts[l] = (counts[l] ?? 0) + 1;
  assert.equal((counts['db-0'] ?? 0) + (counts['db-1'] ?? 0), 200, JSON.stringify(counts));
  assert.ok(Math.abs((counts['db-1'] ?? 0) - 150) <= 25, JSON.stringify(counts));
});

test('kill -9 during long transfers (no-tunnel service, same-node pod): both complete intact, new connects are still steered, the next daemon adopts the pins', { skip: why }, async () => {
  const before = await metrics();
  const steered = pod('client').exec('python3', ['-c', bulkClientScript(BULK_VIP, 5433, true)], { timeoutMs: 60_000 });
  const sameNode = pod('client').exec('python3', ['-c', bulkClientScript(pod('local').ip4, 15433, true)], { timeoutMs: 60_000 });
  await new Promise((r) => setTimeout(r, 300));
  process.kill(must(daemon, 'daemon').pid, 'SIGKILL');
  const down = capturedOut();
  // With the daemon dead, the pinned programs still steer new connects to the service.
  assert.match(await ask(), /^db-[01]$/);
  assert.equal(capturedOut(), down);
  for (const r of await Promise.all([steered, sameNode])) assert.equal(r.stdout.trim(), 'True True True', r.stderr);
  await start('auto');
  const d = JSON.parse(await configDump()) as { kernelFastpaths: { adopted: boolean } };
  assert.equal(d.kernelFastpaths.adopted, true);
  assert.match(await ask(), /^db-[01]$/);
  // The kernel's own counters outlived the daemon: the same-node transfer was carried by the fast path.
  const sameNodeCount = (m: string): number => Number(/skein_kernel_connects_total\{action="same_node"\} (\d+)/.exec(m)?.[1] ?? 0);
  assert.ok(sameNodeCount(await metrics()) > sameNodeCount(before));
});

test('skein proxy --cleanup detaches and unpins everything; with SKEIN_KERNEL_FASTPATH=off the same flow goes through :15001', { skip: why }, async () => {
  await must(daemon, 'daemon').stop();
  const c = spawnSync(process.execPath, [MAIN, 'proxy', '--cleanup'], { env: { ...process.env, SKEIN_BPFFS_DIR: bpffs }, encoding: 'utf8' });
  assert.equal(c.status, 0, c.stderr);
  assert.match(c.stdout, /removed [1-9]\d* pinned object/);
  assert.equal(fs.existsSync(bpffs), false);
  const attached = spawnSync('bpftool', ['cgroup', 'show', must(lab, 'lab').cgroupDir], { encoding: 'utf8' });
  assert.doesNotMatch(attached.stdout, /skein_/);
  await start('off');
  const d = JSON.parse(await configDump()) as { kernelFastpaths: { paths: Record<string, { active: boolean; reason: string }> } };
  assert.deepEqual(d.kernelFastpaths.paths['connect-lb'], { active: false, reason: 'SKEIN_KERNEL_FASTPATH=off' });
  const before = capturedOut();
  assert.match(await ask(), /^db-[01]$/);
  assert.ok(capturedOut() > before, 'captured to Skein\'s 15001 in userspace');
  assert.equal(fs.existsSync(bpffs), false, 'off loads nothing');
});

test('a daemon started with the fast paths off removes what an earlier one pinned, so nothing decides with stale maps', { skip: why }, async () => {
  await must(daemon, 'daemon').stop();
  await start('auto');
  await must(daemon, 'daemon').stop();
  assert.ok(fs.existsSync(bpffs), 'the auto daemon left its pins, as it should for a restart');
  await start('off');
  assert.equal(fs.existsSync(bpffs), false);
  const attached = spawnSync('bpftool', ['cgroup', 'show', must(lab, 'lab').cgroupDir], { encoding: 'utf8' });
  assert.doesNotMatch(attached.stdout, /skein_/);
  const before = capturedOut();
  assert.match(await ask(), /^db-[01]$/);
  assert.ok(capturedOut() > before, 'userspace carries it');
});

test('on a machine with nothing on /sys/fs/bpf the daemon mounts bpffs there, says so, and steers; its pins go with that mount', { skip: why }, async () => {
  await must(daemon, 'daemon').stop();
  await start('auto', true);
  const d = JSON.parse(await configDump()) as { kernelFastpaths: { bpffsMountedByDaemon: string | null; paths: Record<string, { active: boolean; reason: string }> } };
  assert.equal(d.kernelFastpaths.bpffsMountedByDaemon, '/sys/fs/bpf', JSON.stringify(d.kernelFastpaths));
  assert.equal(d.kernelFastpaths.paths['connect-lb']?.active, true, JSON.stringify(d.kernelFastpaths));
  assert.equal(d.kernelFastpaths.paths['same-node']?.active, true);
  const logged = fs.readFileSync(path.join(must(lab, 'lab').dir, 'node0.log'), 'utf8');
  assert.match(logged, /"scope":"accel"[^\n]*"message":"mounted a bpf filesystem at \/sys\/fs\/bpf \(none was mounted\)/);
  const before = capturedOut();
  assert.match(await ask(), /^db-[01]$/);
  assert.equal(capturedOut(), before, 'the kernel steered it');
  // That bpffs lived in the daemon's own mount namespace (a test stand-in for
  // a node's): with the daemon gone, so are its pins, and with them the links.
  await must(daemon, 'daemon').stop();
  await until('links released', () => !/skein_/.test(spawnSync('bpftool', ['cgroup', 'show', must(lab, 'lab').cgroupDir], { encoding: 'utf8' }).stdout), 5000);
});
