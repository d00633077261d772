// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { adoptPooled, consumeReads, pooledSocket } from './pooled-reads.ts';
import { ReadBuffers } from './read-buffers.ts';
import { forward, relay } from './relay.ts';

async function pairOverTcp(): Promise<{ client: net.Socket; server: net.Socket; next: Promise<net.Socket>; close: () => void }> {
  const srv = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => srv.once('connection', r));
  const client = net.connect({ port: (srv.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  const server = await accepted;
  // The connection after this one (a test may dial the same listener again).
  const next = new Promise<net.Socket>((r) => srv.once('connection', r));
  return { client, server, next, close: () => { srv.close(); } };
}

test('bytes flow both ways intact, counted, with half-close relayed', async () => {
  // app ⇄ [proxy: left ⇄ right] ⇄ upstream
  const down = await pairOverTcp();
  const up = await pairOverTcp();
  const done = relay(down.server, up.client);
  const payload = randomBytes(4 * 1024 * 1024);
  const echoed: Buffer[] = [];
  up.server.on('data', (d: Buffer) => echoed.push(d));
  up.server.once('end', () => {
    // The upstream saw the client's FIN and still answers: half-close works.
    up.server.end(Buffer.from('bye'));
  });
  const back: Buffer[] = [];
  down.client.on('data', (d: Buffer) => back.push(d));
  down.client.end(payload);
  const r = await done;
  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  assert.equal(sha(Buffer.concat(echoed)), sha(payload));
  assert.deepEqual({ aToB: r.aToB, bToA: r.bToA, error: r.error }, { aToB: payload.length, bToA: 3, error: undefined });
  await new Promise((res) => down.client.once('close', res));
  assert.equal(Buffer.concat(back).toString(), 'bye');
  down.close();
  up.close();
});

test('a reset on one side tears the other down and reports the error', async () => {
  const down = await pairOverTcp();
  const up = await pairOverTcp();
  const done = relay(down.server, up.client);
  down.client.on('error', () => undefined);
  up.server.resetAndDestroy();
  const r = await done;
  assert.ok(r.error !== undefined);
  // The downstream peer is told too: its connection ends.
  await new Promise((res) => down.client.once('end', res));
  down.client.destroy();
  down.close();
  up.close();
});

test('pooled reads: both sides adopted, bytes intact both ways, buffers reused', async () => {
  const pool = new ReadBuffers();
  const down = await pairOverTcp();
  const up = await pairOverTcp();
  const left = adoptPooled(down.server, pool);
  // The client writes before the relay starts: that read is held, nothing lost.
  const payload = randomBytes(8 * 1024 * 1024);
  down.client.write(payload.subarray(0, 1000));
  await new Promise((r) => setTimeout(r, 20));
  const right = pooledSocket((onread) => net.connect({ port: up.client.remotePort ?? 0, host: '127.0.0.1', allowHalfOpen: true, onread }), pool);
  const upServer = await up.next;
  const done = relay(left, right);
  const echoed: Buffer[] = [];
  upServer.on('data', (d: Buffer) => echoed.push(d));
  upServer.once('end', () => { upServer.end(payload.subarray(0, 3 * 1024 * 1024)); });
  const back: Buffer[] = [];
  down.client.on('data', (d: Buffer) => back.push(d));
  down.client.end(payload.subarray(1000));
  const r = await done;
  await new Promise((res) => down.client.once('close', res));
  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  assert.equal(sha(Buffer.concat(echoed)), sha(payload));
  assert.equal(sha(Buffer.concat(back)), sha(payload.subarray(0, 3 * 1024 * 1024)));
  assert.deepEqual({ aToB: r.aToB, bToA: r.bToA, error: r.error }, { aToB: payload.length, bToA: 3 * 1024 * 1024, error: undefined });
  // Megabytes went through a few pooled buffers, not one per read.
  assert.ok(pool.large.free > 0, 'large buffers came back to the pool');
  up.client.destroy();
  up.server.destroy();
  down.close();
  up.close();
});

test('pooled reads: a buffer goes back only after the write that carries it completes', async () => {
  // A destination that keeps each chunk by reference and copies it only
  // when it completes the write: a buffer handed back (and read into)
  // before then would show up as corrupted bytes.
  const pool = new ReadBuffers();
  const down = await pairOverTcp();
  const got: Buffer[] = [];
  // Its high-water mark is never reached, so reading never pauses and
  // pending chunks queue by reference while reads go on.
  const slow = new Writable({
    highWaterMark: 64 * 1024 * 1024,
    write(chunk: Buffer, _enc, cb) {
      setTimeout(() => { got.push(Buffer.from(chunk)); cb(); }, 1);
    },
  });
  const src = adoptPooled(down.server, pool);
  let counted = 0;
  forward(src, slow, { count: (n) => { counted += n; } });
  const payload = randomBytes(2 * 1024 * 1024);
  down.client.end(payload);
  await new Promise((r) => src.once('end', r));
  await new Promise<void>((r) => { slow.end(r); });
  assert.equal(counted, payload.length);
  assert.ok(Buffer.concat(got).equals(payload), 'no buffer was reused while its write was pending');
  assert.ok(pool.large.free + pool.small.free > 0);
  src.destroy();
  down.client.destroy();
  down.close();
});

test('pooled reads: a socket that has already read cannot be adopted (its bytes would be lost)', async () => {
  const down = await pairOverTcp();
  down.client.write('early');
  await new Promise((r) => down.server.once('readable', r));
  assert.throws(() => adoptPooled(down.server, new ReadBuffers()), /already read/);
  down.server.destroy();
  down.client.destroy();
  down.close();
});

test('pooled reads: a socket has one consumer', async () => {
  const down = await pairOverTcp();
  const s = adoptPooled(down.server, new ReadBuffers());
  assert.equal(consumeReads(s, () => true), true);
  assert.throws(() => consumeReads(s, () => true), /one consumer/);
  assert.equal(consumeReads(down.client, () => true), false, 'a plain socket is not pooled');
  s.destroy();
  down.client.destroy();
  down.close();
});

test('a side that ended before the relay started still passes its end on', async () => {
  // A client can send FIN while its tunnel is being set up; the relay must
  // not wait for an 'end' that has already been emitted.
  const down = await pairOverTcp();
  const up = await pairOverTcp();
  const left = adoptPooled(down.server, new ReadBuffers());
  const ended = new Promise((r) => left.once('end', r));
  down.client.end();
  await ended;
  const done = relay(left, up.client);
  await new Promise((r) => up.server.once('end', r));
  up.server.end('late reply');
  const back: Buffer[] = [];
  down.client.on('data', (d: Buffer) => back.push(d));
  const r = await done;
  await new Promise((res) => down.client.once('close', res));
  assert.equal(Buffer.concat(back).toString(), 'late reply');
  assert.equal(r.error, undefined);
  down.close();
  up.close();
});

test('a slow reader still gets the whole reply after both sides have ended', async () => {
  // The client half-closes at once and reads slowly; the upstream answers
  // with more than the kernel buffers hold and ends. The relay sees both
  // ends while the tail is still queued for the client: it must deliver it.
  const down = await pairOverTcp();
  const up = await pairOverTcp();
  const done = relay(down.server, up.client);
  const reply = randomBytes(8 * 1024 * 1024);
  up.server.once('end', () => { up.server.end(reply); });
  down.client.end();
  const back: Buffer[] = [];
  down.client.on('data', (d: Buffer) => {
    back.push(d);
    down.client.pause();
    setTimeout(() => down.client.resume(), 2);
  });
  await new Promise((r) => down.client.once('end', r));
  const r = await done;
  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  assert.equal(Buffer.concat(back).length, reply.length);
  assert.equal(sha(Buffer.concat(back)), sha(reply));
  assert.deepEqual({ bToA: r.bToA, error: r.error }, { bToA: reply.length, error: undefined });
  down.client.destroy();
  down.close();
  up.close();
});
