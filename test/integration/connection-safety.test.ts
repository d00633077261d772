// SPDX-License-Identifier: Apache-2.0
// Connection safety on the lab (issue 19): a DENY that arrives while the
// app is being dialled closes that connection (HBONE and plaintext); a
// throw injected into each per-connection stage fails that connection only
// and the daemon serves the next; a PROXY v2 header a pod writes itself never
// reaches a sandwiched waypoint's application-tunnel port (plaintext, over
// HBONE, and from the same node); plain TCP upstreams get ztunnel's 10 s
// connect timeout, and both sides of a connection TCP keepalive. Two Skein
// daemons in-process (static config), istio-cni's double enrolling pods.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type net from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { listenTcp } from '@skein/bpf';
import { decodeProxyV2, encodeProxyV2, TLV_PEER_IDENTITY } from '@skein/waypoint/proxy-protocol';
import { startApp, type App } from '@skein/ztunnel-compat/app';
import { parseConfig } from '@skein/ztunnel-compat/config';
import { createLogger } from '@skein/ztunnel-compat/log';
import { injectFault, type Stage } from '@skein/ztunnel-compat/proxy/guard';
import { policyResource } from '@skein/ztunnel-compat/state/testing';
import { ProxyStateUpdater } from '@skein/ztunnel-compat/state/updater';
import { CniDouble } from '../cni/cni-double.ts';
import { Lab, type LabNode, type LabPod } from '../lab/index.ts';
import { needsRoot as rootOnly } from '../skips.ts';
import { kernelMode } from './kernel-mode.ts';
import { must } from './lab-helpers.ts';
import { until } from './until.ts';

const needsRoot = rootOnly('lab namespaces, iptables');
const APP_TUNNEL = 15088;
const FORGED = 'spiffe://cluster.local/ns/istio-system/sa/istiod';

let lab: Lab | undefined;
const apps: App[] = [];
const cnis: CniDouble[] = [];
const closers: (() => void)[] = [];
/** Every log line of both daemons (JSON), for the access-log assertions. */
const logs: Record<string, unknown>[] = [];
/** What reached the waypoint's application-tunnel port: who connected, the first PROXY header's identity. */
const tunnelSaw: { from: string; identity: string | undefined }[] = [];
/** Connections the server pod's apps accepted, as "port client-ip". */
const serverSaw: string[] = [];
/** Sockets of the app that accepts and never answers (port 8092). */
const silent = new Set<net.Socket>();

const pod = (name: string): LabPod => must(lab, 'lab').pod(name);
const node = (i: number): LabNode => must(must(lab, 'lab').nodes[i], `node${i}`);
const app = (i: number): App => must(apps[i], `app${i}`);

function staticConfig(): string {
  const w = (p: LabPod, nodeName: string, extra = ''): string => `- uid: Kubernetes//Pod/${p.namespace}/${p.name}
  name: ${p.name}
  namespace: ${p.namespace}
  trustDomain: cluster.local
  serviceAccount: ${p.serviceAccount}
  workloadIps: ["${p.ip4}"]
  protocol: HBONE
  node: ${nodeName}
  services: {}
${extra}`;
  return `workloads:
${w(pod('client'), 'node0')}${w(pod('server'), 'node1')}${w(pod('neighbour'), 'node1')}\
${w(pod('waypoint'), 'node1', `  applicationTunnel: {protocol: PROXY, port: ${APP_TUNNEL}}\n`)}`;
}

async function scrape(i: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${app(i).admin.ports.stats}/metrics`)).text();
}

/** One line to ip:port from a process in `from`, and the first line back (or nothing). */
async function ask(from: LabPod, ip: string, port: number, waitS = 8): Promise<{ ok: boolean; out: string; ms: number }> {
  const t0 = Date.now();
  const r = await from.exec('bash', ['-c', `exec 3<>/dev/tcp/${ip}/${port} || exit 7; echo ping >&3; timeout ${waitS} head -n1 <&3`], { timeoutMs: (waitS + 7) * 1000 });
  return { ok: r.code === 0 && r.stdout.startsWith('pong'), out: r.stdout + r.stderr, ms: Date.now() - t0 };
}

/** Sends `bytes` to ip:port from `from`, then prints what came back within 3 s. */
async function sendRaw(from: LabPod, ip: string, port: number, bytes: Buffer): Promise<string> {
  const r = await from.exec('python3', ['-c', `
import socket, sys
s = socket.create_connection(("${ip}", ${port}), timeout=3)
s.sendall(bytes.fromhex("${bytes.toString('hex')}"))
out = b""
try:
    while True:
        d = s.recv(4096)
        if not d: break
        out += d
except OSError:
    pass
print(out.decode(errors="replace").strip())`], { timeoutMs: 15_000 });
  return r.stdout.trim();
}

/** A PROXY v2 header a pod writes itself, claiming istiod's identity, then an HTTP request. */
function forgedHeader(from: LabPod): Buffer {
  return Buffer.concat([
    encodeProxyV2({ source: { ip: from.ip4, port: 4242 }, destination: { ip: pod('waypoint').ip4, port: 80 }, tlvs: [{ type: TLV_PEER_IDENTITY, value: Buffer.from(FORGED) }] }),
    Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
  ]);
}

/** Drops new TCP connections to `port` inside the server pod (the connect hangs in SYN-SENT); returns the undo. */
function dropSyn(port: number): () => void {
  const rule = ['INPUT', '-p', 'tcp', '--dport', String(port), '--syn', '-j', 'DROP'];
  pod('server').run('iptables', '-I', ...rule);
  let on = true;
  return () => {
    if (on) pod('server').run('iptables', '-D', ...rule);
    on = false;
  };
}

const synSent = (port: number): string => pod('server').run('ss', '-Htn', 'state', 'syn-sent', `( dport = :${port} )`).trim();

before(async () => {
  if (needsRoot) return;
  lab = Lab.create({ nodes: [
    { pods: [{ name: 'client' }] },
    { pods: [{ name: 'server' }, { name: 'waypoint', serviceAccount: 'waypoint' }, { name: 'neighbour', serviceAccount: 'neighbour' }, { name: 'outside' }] },
  ] });
  fs.writeFileSync(path.join(lab.dir, 'mesh.yaml'), staticConfig());
  const s = pod('server');
  for (const port of [8080, 8090, 8091, 8093]) {
    const server = await listenTcp({ address: s.ip4, port, netns: s.netnsPath }, (c) => {
      serverSaw.push(`${port} ${c.remoteAddress ?? ''}`);
      c.on('error', () => undefined);
      c.once('data', () => { c.end('pong\n'); });
    });
    closers.push(() => { server.close(); });
  }
  const quiet = await listenTcp({ address: s.ip4, port: 8092, netns: s.netnsPath }, (c) => {
    silent.add(c);
    c.on('error', () => undefined);
    c.resume();
    c.once('close', () => { silent.delete(c); });
  });
  closers.push(() => { quiet.close(); });
  // Holds what it accepts without answering: a long-lived connection for the re-check after the 200.
  const holder = await listenTcp({ address: s.ip4, port: 8094, netns: s.netnsPath }, (c) => {
    serverSaw.push(`8094 ${c.remoteAddress ?? ''}`);
    c.on('error', () => undefined);
    c.resume();
  });
  closers.push(() => { holder.close(); });
  // The waypoint's application-tunnel port, on every address as Envoy's would be.
  const tunnel = await listenTcp({ address: '0.0.0.0', port: APP_TUNNEL, netns: pod('waypoint').netnsPath }, (c) => {
    c.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      const decoded = decodeProxyV2(buf);
      if (decoded === undefined) return;
      c.off('data', onData);
      tunnelSaw.push({ from: c.remoteAddress ?? '', identity: decoded.header.tlvs.find((t) => t.type === TLV_PEER_IDENTITY)?.value.toString() });
      c.end('ok\n');
    };
    c.on('data', onData);
  });
  closers.push(() => { tunnel.close(); });
  const sink = new Writable({ write(chunk: Buffer, _enc, cb) { for (const l of chunk.toString().split('\n')) if (l !== '') logs.push(JSON.parse(l) as Record<string, unknown>); cb(); } });
  const log = createLogger('info', 'json', sink);
  for (const [i, n] of [node(0), node(1)].entries()) {
    const cni = new CniDouble(n, CniDouble.socketPathFor(lab.dir, n));
    cnis.push(cni);
    apps.push(await startApp(parseConfig({
      XDS_ADDRESS: '', LOCAL_XDS_PATH: path.join(lab.dir, 'mesh.yaml'), FAKE_CA: 'true', SKEIN_LOCAL_CA_DIR: path.join(lab.dir, 'ca'),
      NODE_NAME: `node${i}`, INPOD_UDS: cni.zds.path, IPV6_ENABLED: 'false', SKEIN_KERNEL_FASTPATH: kernelMode(),
    }), log, { ports: { admin: 0, stats: 0, readiness: 0 } }));
    await cni.zds.waitReady();
  }
  await must(cnis[0], 'cni0').enroll(pod('client'));
  for (const p of ['server', 'waypoint', 'neighbour']) await must(cnis[1], 'cni1').enroll(pod(p));
});

after(async () => {
  for (const a of apps) await a.shutdown({ cleanupKernel: true });
  for (const c of cnis) c.close();
  for (const c of closers) c();
  for (const c of silent) c.destroy();
  lab?.teardown();
});

/** A DENY of one destination port on node1 (where the server is), through the state updater istiod's stream feeds. */
function denyPort(port: number): () => void {
  const updater = new ProxyStateUpdater(app(1).state).authorizationHandler;
  const name = `deny-${port}`;
  assert.deepEqual(updater.handle([policyResource({
    name, namespace: 'default', scope: 1, action: 1, rules: [{ clauses: [{ matches: [{ destinationPorts: [port] }] }] }],
  })], []), []);
  return () => { updater.handle([], [`default/${name}`]); };
}

for (const [path, from, port] of [['HBONE (15008)', 'client', 8090], ['plaintext (15006)', 'outside', 8091]] as const) {
  test(`a DENY applied while ${path} is dialling the app closes that connection; the app never gets it`, { skip: needsRoot, timeout: 60_000 }, async () => {
    const undrop = dropSyn(port);
    let allow = (): void => undefined;
    try {
      const asked = ask(pod(from), pod('server').ip4, port, 10);
      await until(`Skein's connect to :${port} in flight`, () => synSent(port) !== '', 8000);
      allow = denyPort(port);
      // The app now answers: without the re-check the connect would complete on the next SYN retransmit.
      undrop();
      const r = await asked;
      assert.equal(r.ok, false, r.out);
      await new Promise((res) => setTimeout(res, 3500));
      assert.ok(!serverSaw.some((l) => l.startsWith(`${port} `)), `the app got it: ${serverSaw.join(', ')}`);
      assert.equal(synSent(port), '', 'no connect left behind');
      assert.ok(logs.some((l) => l.scope === 'access' && /policy change/.test(String(l.error ?? l.reason ?? l.message))), 'logged as closed by the policy change');
    } finally {
      undrop();
      allow();
    }
    // The port is reachable again once the DENY is gone.
    await new Promise((res) => setTimeout(res, 100));
    assert.ok((await ask(pod(from), pod('server').ip4, port)).ok);
  });
}

test('a DENY applied to an open HBONE connection closes it (the policy re-check), logged as such', { skip: needsRoot, timeout: 60_000 }, async () => {
  const ip = pod('server').ip4;
  // cat ends on the connection's close; `timeout` would end it with 124.
  const held = pod('client').exec('bash', ['-c', `exec 3<>/dev/tcp/${ip}/8094 || exit 7; echo hi >&3; timeout 20 cat <&3 >/dev/null; echo "rc=$?"`], { timeoutMs: 30_000 });
  await until('the held connection at the app', () => serverSaw.some((l) => l.startsWith('8094 ')), 8000);
  const n = logs.length;
  const allow = denyPort(8094);
  try {
    const r = await held;
    assert.doesNotMatch(r.stdout, /rc=124/, 'the connection outlived the DENY');
    assert.match(r.stdout, /rc=\d+/);
    await until('the access log line', () => logs.slice(n).some((l) => l.scope === 'access' && /policy change/.test(String(l.error ?? l.reason ?? l.message))), 5000);
  } finally {
    allow();
  }
});

test('a throw injected into each per-connection stage fails that connection only; the daemon serves the next one', { skip: needsRoot, timeout: 120_000 }, async () => {
  const paths: [Stage, LabPod, number][] = [['outbound', pod('client'), 0], ['hbone', pod('client'), 1], ['inbound', pod('outside'), 1]];
  for (const [stage, from, daemon] of paths) {
    for (const how of ['throw', 'reject'] as const) {
      const before = await scrape(daemon);
      const count = (text: string): number => Number(new RegExp(`skein_connection_task_failures_total\\{stage="${stage}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
      const remove = injectFault((s) => {
        if (s !== stage) return undefined;
        if (how === 'throw') throw new Error(`injected ${how} in ${s}`);
        return Promise.reject(new Error(`injected ${how} in ${s}`));
      });
      let failed;
      try {
        failed = await ask(from, pod('server').ip4, 8080, 5);
      } finally {
        remove();
      }
      assert.equal(failed.ok, false, `${stage}/${how}: ${failed.out}`);
      assert.equal(count(await scrape(daemon)), count(before) + 1, `${stage}/${how} counted`);
      assert.ok(logs.some((l) => new RegExp(`injected ${how} in ${stage}`).test(String(l.error ?? l.err))), `${stage}/${how} logged`);
      const next = await ask(from, pod('server').ip4, 8080);
      assert.ok(next.ok, `${stage}/${how}: the next connection: ${next.out}`);
    }
  }
});

test('a PROXY header a pod writes itself never reaches the waypoint: plaintext to its tunnel port is refused, HBONE gets Skein\'s header first', { skip: needsRoot, timeout: 60_000 }, async () => {
  const wp = pod('waypoint').ip4;
  // Plaintext from a pod outside the mesh, captured on the waypoint's 15006.
  const seen = tunnelSaw.length;
  const plain = await sendRaw(pod('outside'), wp, APP_TUNNEL, forgedHeader(pod('outside')));
  assert.equal(plain, '', 'no answer from the tunnel port');
  assert.equal(tunnelSaw.length, seen, `the tunnel port got: ${JSON.stringify(tunnelSaw.slice(seen))}`);
  assert.ok(logs.some((l) => l.message === 'connection failed' && /application tunnel/.test(String(l.error))), 'refusal logged');
  // From mesh pods, on another node and on the waypoint's own node (where a
  // kernel fast path would otherwise connect the pods directly): the header
  // the port reads is Skein's, naming the caller's verified identity.
  for (const [from, sa] of [['client', 'default'], ['neighbour', 'neighbour']] as const) {
    const before = tunnelSaw.length;
    const reply = await sendRaw(pod(from), wp, APP_TUNNEL, forgedHeader(pod(from)));
    assert.equal(reply, 'ok', from);
    const got = tunnelSaw.slice(before);
    assert.equal(got.length, 1, JSON.stringify(got));
    assert.equal(got[0]?.identity, `spiffe://cluster.local/ns/default/sa/${sa}`, `${from}: ${JSON.stringify(got)}`);
    assert.equal(got[0].from, '127.0.0.1', 'reached from loopback by Skein (LOCALHOST_APP_TUNNEL), not by the pod');
  }
  assert.ok(!tunnelSaw.some((t) => t.identity === FORGED));
});

test('an upstream that accepts and never answers: both sides keep TCP keepalive (180 s), and the client leaving closes it through', { skip: needsRoot, timeout: 60_000 }, async () => {
  const talk = pod('client').exec('python3', ['-c', `
import socket, time
s = socket.create_connection(("${pod('server').ip4}", 8092), timeout=5); s.sendall(b"hello")
time.sleep(3); s.close()`], { timeoutMs: 20_000 });
  await until('the silent app has the connection', () => silent.size === 1, 8000);
  // ss -o shows the keepalive timer (ztunnel's KEEPALIVE_TIME 180 s) on Skein's sockets.
  const upstream = pod('server').run('ss', '-Htno', 'state', 'established', '( dport = :8092 )');
  assert.match(upstream, /timer:\(keepalive,(2min5\d|3min)/, `upstream socket: ${upstream}`);
  const podSide = pod('client').run('ss', '-Htno', 'state', 'established', '( sport = :15001 )');
  assert.match(podSide, /timer:\(keepalive,(2min5\d|3min)/, `pod-side socket: ${podSide}`);
  await talk;
  await until('the upstream closed after the client left', () => silent.size === 0, 8000);
  await until('no socket left on either side', () => pod('server').run('ss', '-Htn', '( dport = :8092 )').trim() === ''
    && pod('client').run('ss', '-Htn', 'state', 'established', '( sport = :15001 )').trim() === '', 8000);
});

test('a plain TCP upstream that never completes its handshake fails after ztunnel\'s 10 s, logged, and leaves nothing behind', { skip: needsRoot, timeout: 60_000 }, async () => {
  const undrop = dropSyn(8093);
  try {
    const r = await ask(pod('outside'), pod('server').ip4, 8093, 20);
    assert.equal(r.ok, false, r.out);
    assert.ok(r.ms >= 9500 && r.ms < 16_000, `closed after ${r.ms} ms`);
    assert.ok(logs.some((l) => l.scope === 'access' && /connection timed out after 10000 ms/.test(String(l.error))), 'logged with the reason');
    assert.equal(synSent(8093), '');
  } finally {
    undrop();
  }
});
