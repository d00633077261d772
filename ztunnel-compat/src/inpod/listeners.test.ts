// SPDX-License-Identifier: Apache-2.0
// A pod's listeners on shutdown: new connections are refused at once, open
// ones get the drain deadline to finish, and what is still open after it is
// closed. Real listeners in a throwaway netns.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type net from 'node:net';
import { after, before, test } from 'node:test';
import { connectTcp, constants, fdOf, hboneEngineUnavailable, native, openNetns } from '@skein/bpf';
import { createNetns, needsRoot, type TempNetns } from '../../../bpf/test/netns-fixture.ts';
import { skipUnless } from '../../../test/skips.ts';
import { markCarried } from '../proxy/carried.ts';
import { NativeHboneClient } from '../proxy/hbone/native-client.ts';
import { ParkedConnection } from '../proxy/pod-connection.ts';
import { consumeReads } from '../proxy/pooled-reads.ts';
import { listenerFactory } from './listeners.ts';

// setup builds the engine: its absence fails the engine's test (test/skips.ts).
const engineSkip = skipUnless({ what: 'the native HBONE engine', missing: hboneEngineUnavailable(), impossible: false });

let ns: TempNetns | undefined;
before(() => { if (!needsRoot) ns = createNetns(); });
after(() => { ns?.remove(); });

function connect(path: string, port: number, allowHalfOpen = false): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = connectTcp({ address: '127.0.0.1', port, netns: path, allowHalfOpen });
    s.once('connect', () => { resolve(s); });
    s.once('error', reject);
  });
}

test('stop(drainMs): listeners close first, open connections finish within the drain, the rest get a FIN before its deadline', { skip: needsRoot }, async () => {
  const path = ns?.path ?? '';
  const accepted: net.Socket[] = [];
  const factory = listenerFactory({ mark: undefined, keepalive: undefined, reusePort: true, ipv6: false, onConnection: (_k, s) => { accepted.push(s); s.on('error', () => undefined); } });
  const fd = openNetns(path);
  const proxy = await factory.start('uid', { name: 'p', namespace: 'ns', serviceAccount: 'sa' }, fd);
  const finishing = await connect(path, 15001);
  const lingering = await connect(path, 15006);
  for (const s of [finishing, lingering]) s.on('error', () => undefined);
  while (accepted.length < 2) await new Promise((r) => setTimeout(r, 10));
  const t0 = Date.now();
  const stopped = proxy.stop(600);
  await new Promise((r) => setTimeout(r, 50));
  await assert.rejects(connect(path, 15001), 'no new connections while draining');
  // One connection ends by itself during the drain; the other outlives it and is closed.
  finishing.end();
  const lingeringClosed = new Promise<number>((resolve) => { lingering.once('close', () => { resolve(Date.now() - t0); }); });
  lingering.resume();
  await stopped;
  fs.closeSync(fd);
  const at = await lingeringClosed;
  // Half the drain before its deadline (a second for longer drains) it got a FIN, and answered it.
  assert.ok(at >= 280 && at < 600, `closed after its FIN at 300 ms (${at} ms)`);
  assert.ok(Date.now() - t0 < 2000);
});

test('near the drain deadline a connection gets a FIN, never a reset: what it still sends is taken, its own FIN closes it; one that never answers is closed at the deadline', { skip: needsRoot }, async () => {
  const path = ns?.path ?? '';
  const pods: net.Socket[] = [];
  const factory = listenerFactory({ mark: undefined, keepalive: undefined, reusePort: true, ipv6: false, onConnection: (_k, s) => { pods.push(s); s.resume(); } });
  const fd = openNetns(path);
  const proxy = await factory.start('uid', { name: 'p', namespace: 'ns', serviceAccount: 'sa' }, fd);
  const answering = await connect(path, 15001);
  const deaf = await connect(path, 15001, true);
  while (pods.length < 2) await new Promise((r) => setTimeout(r, 10));
  // The answering app writes until the FIN, then 50 ms more (what it had in flight), then ends.
  const pump = setInterval(() => { answering.write(Buffer.alloc(4096)); }, 1);
  const seen = new Promise<string>((resolve) => {
    answering.once('error', (e: NodeJS.ErrnoException) => { clearInterval(pump); resolve(e.code ?? e.message); });
    answering.once('end', () => { setTimeout(() => { clearInterval(pump); answering.end(); resolve('end'); }, 50); });
  });
  answering.resume();
  deaf.on('error', () => undefined); // half-open allowed: it never answers the FIN
  const [answeringPod, deafPod] = pods as [net.Socket, net.Socket];
  const closedAt = (s: net.Socket): Promise<number> => new Promise((resolve) => { s.once('close', () => { resolve(Date.now() - t0); }); });
  const t0 = Date.now();
  const closed = Promise.all([closedAt(answeringPod), closedAt(deafPod)]);
  await proxy.stop(600);
  fs.closeSync(fd);
  const [a, d] = await closed;
  assert.equal(await seen, 'end');
  const clean = await new Promise<boolean>((resolve) => { if (answering.closed) resolve(!answering.errored); else answering.once('close', (hadError) => { resolve(!hadError); }); });
  assert.ok(clean, 'the answering app closed without an error');
  // The FIN goes at 300 ms (half the drain); the answering one ends 50 ms later, the deaf one at the deadline.
  assert.ok(a >= 300 && a < 550, `the answering one closed at ${a} ms: by its FIN, not the deadline`);
  assert.ok(d >= 580 && d < 1200, `the deaf one closed at ${d} ms: the deadline`);
  deaf.destroy();
});

test('stop(drainMs) waits for a connection the native engine carries (Node\'s copy closed at the hand-over) until the engine reports its end', { skip: needsRoot }, async () => {
  const path = ns?.path ?? '';
  let ended: () => void = () => undefined;
  const carried = new Promise<void>((resolve) => { ended = resolve; });
  const factory = listenerFactory({
    mark: undefined, keepalive: undefined, reusePort: true, ipv6: false,
    onConnection: (_k, s) => { markCarried(s, carried); s.destroy(); },
  });
  const fd = openNetns(path);
  const proxy = await factory.start('uid', { name: 'p', namespace: 'ns', serviceAccount: 'sa' }, fd);
  const client = await connect(path, 15001);
  client.on('error', () => undefined);
  await new Promise((r) => setTimeout(r, 50));
  const t0 = Date.now();
  setTimeout(ended, 300);
  await proxy.stop(2000);
  const ms = Date.now() - t0;
  fs.closeSync(fd);
  client.destroy();
  assert.ok(ms >= 280 && ms < 1500, `stopped ${ms} ms after, when the engine's end came`);
});

test('stop() ends the connections the engine carries through their end hook, saying why', { skip: needsRoot }, async () => {
  const path = ns?.path ?? '';
  const reasons: string[] = [];
  const factory = listenerFactory({
    mark: undefined, keepalive: undefined, reusePort: true, ipv6: false,
    onConnection: (_k, s) => { markCarried(s, new Promise(() => undefined), (why) => { reasons.push(why); }); s.destroy(); },
  });
  const fd = openNetns(path);
  const proxy = await factory.start('uid', { name: 'p', namespace: 'ns', serviceAccount: 'sa' }, fd);
  const client = await connect(path, 15001);
  client.on('error', () => undefined);
  await new Promise((r) => setTimeout(r, 50));
  await proxy.stop();
  fs.closeSync(fd);
  client.destroy();
  assert.deepEqual(reasons, ['the pod left the mesh']);
});

test('stop() with no drain closes open connections at once (the pod left the mesh)', { skip: needsRoot }, async () => {
  const path = ns?.path ?? '';
  const factory = listenerFactory({ mark: undefined, keepalive: undefined, reusePort: true, ipv6: false, onConnection: (_k, s) => { s.on('error', () => undefined); } });
  const fd = openNetns(path);
  const proxy = await factory.start('uid', { name: 'p', namespace: 'ns', serviceAccount: 'sa' }, fd);
  const open = await connect(path, 15001);
  open.on('error', () => undefined);
  open.resume();
  const closed = new Promise((r) => open.once('close', r));
  const t0 = Date.now();
  await proxy.stop();
  fs.closeSync(fd);
  await closed;
  assert.ok(Date.now() - t0 < 300);
});

test('every accepted pod socket has the listeners\' TCP keepalive (KEEPALIVE_*) and TCP_NODELAY, set once on the listener', { skip: needsRoot }, async () => {
  const path = ns?.path ?? '';
  const accepted: net.Socket[] = [];
  const keepalive = { timeSeconds: 170, intervalSeconds: 11, retries: 7 };
  const factory = listenerFactory({ mark: undefined, keepalive, reusePort: true, ipv6: false, onConnection: (_k, s) => { accepted.push(s); s.on('error', () => undefined); } });
  const fd = openNetns(path);
  const proxy = await factory.start('uid', { name: 'p', namespace: 'ns', serviceAccount: 'sa' }, fd);
  const clients = await Promise.all([15001, 15006, 15008].map((port) => connect(path, port)));
  try {
    while (accepted.length < 3) await new Promise((r) => setTimeout(r, 10));
    for (const s of accepted) {
      const sock = fdOf(s);
      assert.equal(native.getIntOpt(sock, constants.SOL_SOCKET, constants.SO_KEEPALIVE), 1);
      assert.equal(native.getIntOpt(sock, constants.IPPROTO_TCP, constants.TCP_KEEPIDLE), 170);
      assert.equal(native.getIntOpt(sock, constants.IPPROTO_TCP, constants.TCP_KEEPINTVL), 11);
      assert.equal(native.getIntOpt(sock, constants.IPPROTO_TCP, constants.TCP_KEEPCNT), 7);
      assert.equal(native.getIntOpt(sock, constants.IPPROTO_TCP, constants.TCP_NODELAY), 1);
    }
  } finally {
    for (const c of clients) c.destroy();
    await proxy.stop();
    fs.closeSync(fd);
  }
});

test('a kind the native engine accepts: no Node server; each connection is held for the drain, parked with its bytes in the kernel until decided, and ended at the drain deadline', { skip: needsRoot || engineSkip }, async () => {
  const path = ns?.path ?? '';
  const client = new NativeHboneClient({ workers: 1 });
  const parked: ParkedConnection[] = [];
  const viaNode: string[] = [];
  const factory = listenerFactory({
    mark: undefined, keepalive: undefined, reusePort: true, ipv6: false,
    onConnection: (kind, s) => { viaNode.push(kind); s.on('error', () => undefined); },
    engine: {
      kinds: ['outbound'],
      listen: (_kind, fd, pod, hold) => client.listen(fd, (a) => {
        const conn = new ParkedConnection(client, a, pod);
        hold(conn);
        parked.push(conn);
      }),
    },
  });
  const fd = openNetns(path);
  const proxy = await factory.start('uid', { name: 'p', namespace: 'ns', serviceAccount: 'sa' }, fd);
  const clients = await Promise.all([15001, 15001, 15006].map((port) => connect(path, port)));
  try {
    for (const c of clients) { c.on('error', () => undefined); c.write('hello'); }
    while (parked.length < 2 || viaNode.length < 1) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(viaNode, ['inbound'], '15006 stays Node\'s; 15001 never reaches Node');
    const [first, second] = parked as [ParkedConnection, ParkedConnection];
    assert.equal(first.srcIp, '127.0.0.1');
    assert.ok([clients[0]?.localPort, clients[1]?.localPort].includes(first.srcPort));
    // Dialled straight to 15001, not redirected: the kernel has no original destination.
    assert.throws(() => first.originalDst(), /SO_ORIGINAL_DST: no NAT entry/);
    // Taken for Node (reading into pooled buffers, as a relay would), it reads what waited in the kernel.
    const socket = first.socket();
    const got = await new Promise<string>((resolve) => {
      consumeReads(socket, (chunk, release) => { resolve(Buffer.from(chunk).toString()); release(); return true; });
    });
    assert.equal(got, 'hello');
    assert.equal(first.socket(), socket, 'taken once');
    // The drain waits for the one still parked, then ends it: its client sees the close.
    const t0 = Date.now();
    const closed = new Promise<number>((resolve) => {
      const c = clients.find((k) => k.localPort === second.srcPort);
      c?.once('close', () => { resolve(Date.now() - t0); });
      c?.resume();
    });
    socket.destroy();
    await proxy.stop(300);
    const at = await closed;
    assert.ok(at >= 250 && at < 1500, `the parked connection was ended at the drain deadline (${at} ms)`);
    await assert.rejects(connect(path, 15001), 'the engine no longer listens');
  } finally {
    for (const c of clients) c.destroy();
    await proxy.stop();
    client.close();
    fs.closeSync(fd);
  }
});
