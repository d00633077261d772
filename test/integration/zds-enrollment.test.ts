// SPDX-License-Identifier: Apache-2.0
// ZDS enrollment end to end on the lab: istio-cni's double installs the real
// in-pod rules and sends Add with the pod's netns fd; Skein's ZDS client acks
// and opens the pod's capture listeners inside that netns; Del and a new
// snapshot drain them; bad input gets error acks and nothing leaks.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type net from 'node:net';
import { after, before, test } from 'node:test';
import { originalDst, type SocketAddress } from '@skein/bpf';
import { listenerFactory, type CaptureKind } from '@skein/ztunnel-compat/inpod/listeners';
import { WorkloadProxyManager } from '@skein/ztunnel-compat/inpod/manager';
import { encodeRequest } from '@skein/ztunnel-compat/inpod/protocol';
import { ZdsClient } from '@skein/ztunnel-compat/inpod/zds-client';
import { CniDouble } from '../cni/cni-double.ts';
import { Lab, type LabPod } from '../lab/index.ts';
import { until } from './until.ts';

const needsRoot = process.getuid?.() === 0 ? false : 'needs root (lab namespaces, iptables)';

interface Captured { kind: CaptureKind; pod: string; dst: SocketAddress }

let lab: Lab | undefined;
let cni: CniDouble | undefined;
let manager: WorkloadProxyManager | undefined;
let client: ZdsClient | undefined;
const captured: Captured[] = [];

function need<T>(x: T | undefined, what: string): T {
  if (x === undefined) throw new Error(`${what} not set up`);
  return x;
}
const pods = (): [LabPod, LabPod, LabPod] => {
  const ps = need(lab, 'lab').pods;
  const [a, b, c] = ps;
  if (a === undefined || b === undefined || c === undefined) throw new Error('lab has too few pods');
  return [a, b, c];
};

/** Connects from inside `from` to dst:port (a real process in the pod), and says whether it connected. */
async function dial(from: LabPod, ip: string, port: number): Promise<boolean> {
  const r = await from.exec('bash', ['-c', `exec 3<>/dev/tcp/${ip}/${port}`], { timeoutMs: 5000 });
  return r.code === 0;
}

before(() => {
  if (needsRoot) return;
  lab = Lab.create({ nodes: 1, podsPerNode: 3 });
  const node = need(lab.nodes[0], 'node');
  cni = new CniDouble(node, CniDouble.socketPathFor(lab.dir, node), { deadlineMs: 2000 });
  manager = new WorkloadProxyManager({
    retryMs: 200,
    factory: listenerFactory({
      mark: 0x539, keepalive: undefined, reusePort: true, ipv6: true,
      onConnection: (kind: CaptureKind, s: net.Socket, pod) => {
        captured.push({ kind, pod: pod.info.name, dst: originalDst(s) });
        s.destroy();
      },
    }),
  });
  client = new ZdsClient({ path: cni.zds.path, manager, backoff: { initialMs: 10, maxMs: 200 } });
});
after(async () => {
  client?.stop();
  await manager?.close();
  cni?.close();
  lab?.teardown();
});

test('Hello and an empty snapshot make the client ready', { skip: needsRoot }, async () => {
  const c = need(client, 'client');
  const snap = new Promise((r) => c.once('snapshot', r));
  c.start();
  await snap;
  assert.equal(c.snapshotReceived, true);
  const z = need(cni, 'cni').zds;
  await z.waitReady();
  assert.deepEqual(z.log.filter((l) => l.dir === 'recv').map((l) => l.what), ['hello v1', 'ack']);
});

test('enrolling a pod opens its capture listeners in its netns; its outbound TCP reaches 15001', { skip: needsRoot }, async () => {
  const [a, b] = pods();
  await need(cni, 'cni').enroll(a);
  assert.deepEqual(need(manager, 'manager').status().map((s) => [s.info.name, s.state]), [[a.name, 'running']]);
  const listening = a.run('ss', '-Hltn');
  for (const port of [15001, 15006, 15008]) assert.match(listening, new RegExp(`:${port}\\b`), `listening on ${port}`);
  // Connections queued on these SO_REUSEPORT listeners when a replaced proxy
  // closes them go to the new proxy's listeners instead of being reset.
  assert.equal(a.run('cat', '/proc/sys/net/ipv4/tcp_migrate_req').trim(), '1');
  assert.ok(await dial(a, b.ip4, 8080), 'the capture accepted the connection');
  await until('captured', () => captured.length > 0);
  assert.deepEqual(captured.at(-1), { kind: 'outbound', pod: a.name, dst: { address: b.ip4, port: 8080, family: 4 } });
  // Inbound plaintext to the pod lands on 15006.
  assert.ok(await dial(b, a.ip4, 9090));
  await until('inbound captured', () => captured.some((c) => c.kind === 'inbound'));
  assert.deepEqual(captured.find((c) => c.kind === 'inbound')?.dst, { address: a.ip4, port: 9090, family: 4 });
});

test('Del drains the pod: its listeners close', { skip: needsRoot }, async () => {
  const [a, b] = pods();
  const fdsBefore = fs.readdirSync('/proc/self/fd').length;
  await need(cni, 'cni').zds.removePod(a.uid);
  assert.deepEqual(need(manager, 'manager').status(), []);
  assert.doesNotMatch(a.run('ss', '-Hltn'), /:1500[168]\b/);
  // The rules are still there but nobody listens: the connect is refused.
  assert.equal(await dial(a, b.ip4, 8080), false);
  assert.ok(fs.readdirSync('/proc/self/fd').length < fdsBefore, 'the listener fds and the netns fd were closed');
});

test('an Add without an fd, or a Del with one, gets an error ack; the connection stays', { skip: needsRoot }, async () => {
  const z = need(cni, 'cni').zds;
  const [noFd] = await z.sendRaw(encodeRequest({ kind: 'add', uid: 'x', workloadInfo: { name: 'x', namespace: 'n', serviceAccount: 's' } }));
  assert.match(noFd ?? '', /carried no netns fd/);
  const devnull = fs.openSync('/dev/null', 'r');
  const [withFd] = await z.sendRaw(encodeRequest({ kind: 'del', uid: 'x' }), devnull);
  fs.closeSync(devnull);
  assert.match(withFd ?? '', /unexpected fd with del/);
  assert.equal(z.readyConnections, 1);
});

test('a Del whose proxy fails to stop is acked with the error, and later messages are still handled', { skip: needsRoot }, async () => {
  const m = need(manager, 'manager');
  const del = m.del.bind(m);
  m.del = (): Promise<void> => {
    m.del = del;
    return Promise.reject(new Error('the proxy would not stop'));
  };
  const z = need(cni, 'cni').zds;
  const [ack] = await z.sendRaw(encodeRequest({ kind: 'del', uid: 'nobody' }));
  assert.match(ack ?? '', /the proxy would not stop/);
  const [next] = await z.sendRaw(encodeRequest({ kind: 'add', uid: 'y', workloadInfo: { name: 'y', namespace: 'n', serviceAccount: 's' } }));
  assert.match(next ?? '', /carried no netns fd/, 'the next message was handled');
  assert.equal(z.readyConnections, 1);
});

test('a failure after the ack (a snapshot listener that throws) sends no second ack: istio-cni sees no unsolicited message, and the next message gets its own', { skip: needsRoot }, async () => {
  const cl = need(client, 'client');
  const z = need(cni, 'cni').zds;
  const errors: string[] = [];
  const onError = (err: Error): void => { errors.push(err.message); };
  z.on('protocolError', onError);
  const done = new Promise<void>((resolve) => {
    cl.once('snapshot', () => {
      resolve();
      throw new Error('a snapshot listener failed');
    });
  });
  z.dropConnections(); // the reconnect sends a new snapshot
  await done;
  await until('reconnected', () => z.readyConnections === 1);
  const [next] = await z.sendRaw(encodeRequest({ kind: 'add', uid: 'z', workloadInfo: { name: 'z', namespace: 'n', serviceAccount: 's' } }));
  assert.match(next ?? '', /carried no netns fd/);
  z.off('protocolError', onError);
  assert.deepEqual(errors, [], 'istio-cni saw no unsolicited ack');
});

test('a pod whose listeners cannot start is acked with the error and retried until they can', { skip: needsRoot }, async () => {
  const [, , c] = pods();
  // Something in the pod already holds 15008 without SO_REUSEPORT.
  const squatter = c.spawn('bash', ['-c', 'exec python3 -c "import socket,time; s=socket.socket(); s.bind((\'0.0.0.0\',15008)); s.listen(); time.sleep(30)"']);
  await until('squatter listening', () => /:15008\b/.test(c.run('ss', '-Hltn')));
  await assert.rejects(need(cni, 'cni').enroll(c), /node proxy refused .*EADDRINUSE/);
  assert.equal(need(manager, 'manager').status()[0]?.state, 'pending');
  if (squatter.pid !== undefined) process.kill(squatter.pid, 'SIGKILL');
  await until('retried and running', () => need(manager, 'manager').status()[0]?.state === 'running');
});

test('after a reconnect, pods missing from the new snapshot are drained', { skip: needsRoot }, async () => {
  const [a, b, c] = pods();
  const cn = need(cni, 'cni');
  await cn.enroll(a);
  await cn.enroll(b);
  assert.deepEqual(need(manager, 'manager').status().map((s) => s.info.name).sort(), [a.name, b.name, c.name].sort());
  // istio-cni restarts and meanwhile forgets pod b (no Del reaches us).
  const cl = need(client, 'client');
  const snap = new Promise((r) => cl.once('snapshot', r));
  cn.zds.dropConnections();
  await cn.zds.removePod(b.uid);
  await snap;
  assert.deepEqual(need(manager, 'manager').status().map((s) => s.info.name).sort(), [a.name, c.name].sort());
  assert.doesNotMatch(b.run('ss', '-Hltn'), /:15001\b/);
});

test('a second SnapshotSent is a protocol error: nacked, reconnected, state replayed', { skip: needsRoot }, async () => {
  const cl = need(client, 'client');
  const errored = new Promise<Error>((r) => cl.once('protocolError', r));
  const again = new Promise((r) => cl.once('snapshot', r));
  const [ack] = await need(cni, 'cni').zds.sendRaw(encodeRequest({ kind: 'snapshotSent' }));
  assert.match(ack ?? '', /a second SnapshotSent/);
  assert.match((await errored).message, /second SnapshotSent/);
  await again;
  assert.equal(need(manager, 'manager').status().length, 2);
});
