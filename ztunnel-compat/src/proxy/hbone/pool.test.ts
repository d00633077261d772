// SPDX-License-Identifier: Apache-2.0
// The HBONE client pool: session reuse per key, a second session when the
// stream limit is reached, serialised first connects, GOAWAY handling, idle
// release, and no sockets left behind.
import assert from 'node:assert/strict';
import { constants as h2constants, createServer as createH2Server } from 'node:http2';
import type { Http2Session } from 'node:http2';
import type { Duplex } from 'node:stream';
import { after, before, test } from 'node:test';
import { createServer as createTlsServer } from 'node:tls';
import { HboneClient } from './client.ts';
import type { TunnelRequest } from './client.ts';
import { HboneError } from './error.ts';
import { serverContext } from './tls.ts';
import { certs, startServer } from './testing.ts';
import type { Certs, Harness } from './testing.ts';

let c: Certs;
let h: Harness;
let baseline: number;

function sockets(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'TLSWrap').length;
}

before(async () => {
  c = await certs();
  h = await startServer(c.server);
  baseline = sockets();
});

after(async () => {
  await h.close();
});

function req(poolKey: string): TunnelRequest {
  return { cert: c.client, expected: [c.serverId], upstream: { ip: '127.0.0.1', port: h.port }, authority: `127.0.0.1:${h.echo.port}`, poolKey };
}

async function echoOnce(t: Duplex, text: string): Promise<string> {
  const chunks: Buffer[] = [];
  t.on('data', (d: Buffer) => chunks.push(d));
  const closed = new Promise((r) => t.once('close', r));
  t.end(text);
  await closed;
  return Buffer.concat(chunks).toString();
}

test('one session carries 10 sequential tunnels; a second opens when maxStreams is reached', async () => {
  const client = new HboneClient({ maxStreams: 2 });
  const serverSessions = h.server.sessionCount;
  try {
    for (let i = 0; i < 10; i++) {
      const t = await client.connect(req('k1'));
      assert.equal(await echoOnce(t, `ping ${i}`), `ping ${i}`);
    }
    assert.equal(client.sessionsFor('k1'), 1);
    assert.equal(client.sessionCount, 1);
    assert.equal(h.server.sessionCount, serverSessions + 1);

    const a = await client.connect(req('k1'));
    const b = await client.connect(req('k1'));
    assert.equal(client.sessionsFor('k1'), 1, 'two streams fit in one session');
    const third = await client.connect(req('k1'));
    assert.equal(client.sessionsFor('k1'), 2, 'the third stream needs a second session');
    assert.equal(h.server.sessionCount, serverSessions + 2);
    // Another key never shares.
    const other = await client.connect(req('k2'));
    assert.equal(client.sessionsFor('k2'), 1);
    assert.equal(client.sessionCount, 3);
    assert.deepEqual(await Promise.all([echoOnce(a, 'a'), echoOnce(b, 'b'), echoOnce(third, 'c'), echoOnce(other, 'd')]), ['a', 'b', 'c', 'd']);
  } finally {
    await client.close();
  }
  assert.equal(client.sessionCount, 0);
});

test('concurrent first connects to one key open one session', async () => {
  const client = new HboneClient();
  const serverSessions = h.server.sessionCount;
  try {
    const tunnels = await Promise.all(Array.from({ length: 8 }, () => client.connect(req('burst'))));
    assert.equal(client.sessionCount, 1);
    assert.equal(h.server.sessionCount, serverSessions + 1);
    const got = await Promise.all(tunnels.map((t, i) => echoOnce(t, `n${i}`)));
    assert.deepEqual(got, tunnels.map((_t, i) => `n${i}`));
  } finally {
    await client.close();
  }
});

test('concurrent first connects share the failure of the one handshake', async () => {
  const client = new HboneClient();
  try {
    const results = await Promise.allSettled(Array.from({ length: 4 }, () =>
      client.connect({ ...req('bad'), expected: [c.clientId] })));
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      assert.ok(r.reason instanceof HboneError && r.reason.flag === 'TLS_FAILURE');
    }
    assert.equal(client.sessionCount, 0);
  } finally {
    await client.close();
  }
});

test('the peer MAX_CONCURRENT_STREAMS caps streams per session when below maxStreams', async () => {
  // A bare HBONE-TLS + HTTP/2 server advertising MAX_CONCURRENT_STREAMS 2 that answers 200 and echoes.
  const tls = serverContext(c.server);
  const h2 = createH2Server({ settings: { maxConcurrentStreams: 2 } });
  h2.on('stream', (stream) => {
    stream.respond({ ':status': 200 });
    stream.pipe(stream);
  });
  const srv = createTlsServer(tls.options, (s) => { h2.emit('connection', s); });
  await new Promise<void>((r) => { srv.listen(0, '127.0.0.1', r); });
  const addr = srv.address();
  assert.ok(addr !== null && typeof addr === 'object');
  const client = new HboneClient();
  try {
    const r = { ...req('cap'), upstream: { ip: '127.0.0.1', port: addr.port } };
    const ts = await Promise.all([1, 2, 3].map(() => client.connect(r)));
    assert.equal(client.sessionsFor('cap'), 2, '3 streams with a peer limit of 2 need 2 sessions');
    assert.deepEqual(await Promise.all(ts.map((t, i) => echoOnce(t, `x${i}`))), ['x0', 'x1', 'x2']);
  } finally {
    await client.close();
    await new Promise<void>((r) => { srv.close(() => { r(); }); });
  }
});

/**
 * An echo server whose first session refuses its first stream (REFUSED_STREAM),
 * with a GOAWAY (a peer being replaced) or without (a peer at its stream limit);
 * later sessions answer.
 */
async function refusingServer(goaway: boolean): Promise<{ port: number; seen: Set<Http2Session>; close: () => Promise<void> }> {
  const h2 = createH2Server();
  const seen = new Set<Http2Session>();
  h2.on('stream', (stream) => {
    const first = seen.size === 0;
    if (stream.session !== undefined) seen.add(stream.session);
    stream.on('error', () => { /* our own REFUSED_STREAM */ });
    if (first) {
      stream.close(h2constants.NGHTTP2_REFUSED_STREAM);
      if (goaway) stream.session?.goaway(h2constants.NGHTTP2_NO_ERROR, 0);
      return;
    }
    stream.respond({ ':status': 200 });
    stream.pipe(stream);
  });
  const srv = createTlsServer(serverContext(c.server).options, (s) => { h2.emit('connection', s); });
  await new Promise<void>((r) => { srv.listen(0, '127.0.0.1', r); });
  const addr = srv.address();
  assert.ok(addr !== null && typeof addr === 'object');
  return {
    port: addr.port, seen,
    close: async () => {
      // The bare server keeps the sessions it refused on; close() would wait for them.
      for (const s of seen) s.destroy();
      await new Promise<void>((r) => { srv.close(() => { r(); }); });
    },
  };
}

test('a CONNECT its peer never took (refused as the session goes away) is sent once more on a new session', async () => {
  const srv = await refusingServer(true);
  const client = new HboneClient();
  try {
    const t = await client.connect({ ...req('refused'), upstream: { ip: '127.0.0.1', port: srv.port } });
    assert.equal(await echoOnce(t, 'again'), 'again');
    assert.equal(srv.seen.size, 2, 'the second try went on a new session');
  } finally {
    await client.close();
    await srv.close();
  }
});

test('a session that refused a stream, without a GOAWAY, is closed once its streams end: refusals leave no session behind', async () => {
  const srv = await refusingServer(false);
  const client = new HboneClient();
  try {
    const t = await client.connect({ ...req('refused-open'), upstream: { ip: '127.0.0.1', port: srv.port } });
    assert.equal(await echoOnce(t, 'again'), 'again');
    assert.equal(srv.seen.size, 2, 'the second try went on a new session');
    const deadline = Date.now() + 3000;
    while (client.sessionCount > 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(client.sessionCount, 1, 'only the session in use is left; the refusing one was closed');
    const refusing = [...srv.seen][0];
    assert.ok(refusing?.closed === true || refusing?.destroyed === true, 'the server saw the refusing session end');
  } finally {
    await client.close();
    await srv.close();
  }
});

test('a CONNECT answered with an error status is not sent again', async () => {
  const tls = serverContext(c.server);
  const h2 = createH2Server();
  let streams = 0;
  h2.on('stream', (stream) => {
    streams++;
    stream.respond({ ':status': 503 }, { endStream: true });
  });
  const srv = createTlsServer(tls.options, (s) => { h2.emit('connection', s); });
  await new Promise<void>((r) => { srv.listen(0, '127.0.0.1', r); });
  const addr = srv.address();
  assert.ok(addr !== null && typeof addr === 'object');
  const client = new HboneClient();
  try {
    await assert.rejects(client.connect({ ...req('503'), upstream: { ip: '127.0.0.1', port: addr.port } }), (e: unknown) => e instanceof HboneError && e.status === 503);
    assert.equal(streams, 1);
  } finally {
    await client.close();
    await new Promise<void>((r) => { srv.close(() => { r(); }); });
  }
});

test('a session that receives GOAWAY leaves the pool; the next connect opens a new one', async () => {
  const client = new HboneClient();
  const local = await startServer(c.server);
  try {
    const r = { ...req('ga'), upstream: { ip: '127.0.0.1', port: local.port }, authority: `127.0.0.1:${local.echo.port}` };
    const t = await client.connect(r);
    assert.equal(await echoOnce(t, 'one'), 'one');
    assert.equal(client.sessionsFor('ga'), 1);
    await local.server.close(); // GOAWAY to every session; the listener stops.
    await waitFor(() => client.sessionCount === 0);
    assert.equal(client.sessionsFor('ga'), 0);
    await assert.rejects(client.connect(r), (err: unknown) => err instanceof HboneError);
  } finally {
    await client.close();
    await local.close().catch(() => undefined);
  }
});

test('a session that has opened streamsPerConnection streams leaves the pool; its tunnels finish, then it closes', async () => {
  const client = new HboneClient({ streamsPerConnection: 2 });
  const local = await startServer(c.server);
  try {
    const r = { ...req('spc'), upstream: { ip: '127.0.0.1', port: local.port }, authority: `127.0.0.1:${local.echo.port}` };
    const a = await client.connect(r);
    const b = await client.connect(r);
    assert.equal(client.sessionsFor('spc'), 0, 'its second stream took the first session out of the pool');
    assert.equal(client.sessionCount, 1);
    const d = await client.connect(r);
    assert.equal(client.sessionCount, 2, 'the third tunnel has a new session');
    // The first session's tunnels run on, then it closes.
    assert.deepEqual(await Promise.all([echoOnce(a, 'a'), echoOnce(b, 'b')]), ['a', 'b']);
    await waitFor(() => client.sessionCount === 1 && local.server.sessionCount === 1, 3000);
    const e = await client.connect(r);
    assert.equal(client.sessionCount, 1, 'the fourth fits on the second session');
    assert.deepEqual(await Promise.all([echoOnce(d, 'd'), echoOnce(e, 'e')]), ['d', 'e']);
    await waitFor(() => client.sessionCount === 0 && local.server.sessionCount === 0, 3000);
  } finally {
    await client.close(1000); // a failed assertion leaves tunnels open: never wait on them
    await local.close().catch(() => undefined);
  }
});

test('concurrent connects count against streamsPerConnection as they take a session, not as they send', async () => {
  const client = new HboneClient({ streamsPerConnection: 2 });
  try {
    // All three wait for the one session being opened, then take it together.
    const tunnels = await Promise.all([0, 1, 2].map(() => client.connect(req('spc-concurrent'))));
    assert.equal(client.sessionCount, 2, 'two on the first session, the third on a second');
    assert.deepEqual(await Promise.all(tunnels.map((t, i) => echoOnce(t, `t${i}`))), ['t0', 't1', 't2']);
  } finally {
    await client.close(1000); // a failed assertion leaves tunnels open: never wait on them
  }
});

test('an idle session is released after idleTimeoutMs', async () => {
  const client = new HboneClient({ idleTimeoutMs: 100 });
  try {
    const t = await client.connect(req('idle'));
    assert.equal(await echoOnce(t, 'z'), 'z');
    assert.equal(client.sessionCount, 1);
    await waitFor(() => client.sessionCount === 0, 3000);
    const t2 = await client.connect(req('idle'));
    assert.equal(await echoOnce(t2, 'again'), 'again');
  } finally {
    await client.close();
  }
});

test('close(graceMs) destroys tunnels that do not finish in time', async () => {
  const client = new HboneClient();
  const t = await client.connect(req('grace'));
  t.on('error', () => undefined);
  const started = Date.now();
  await client.close(100);
  assert.ok(Date.now() - started < 2000);
  assert.equal(client.sessionCount, 0);
  assert.ok(t.destroyed);
});

test('a closed pool refuses new tunnels', async () => {
  const client = new HboneClient();
  await client.close();
  await assert.rejects(client.connect(req('closed')), (err: unknown) => err instanceof HboneError);
});

test('no sockets or sessions are left behind', async () => {
  await waitFor(() => h.server.sessionCount === 0);
  await waitFor(() => sockets() <= baseline);
  assert.equal(h.server.activeTunnels, 0);
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}
