// SPDX-License-Identifier: Apache-2.0
// End-to-end HBONE: a real client and server over TLS 1.3 + HTTP/2 on
// 127.0.0.1, an echo upstream, and the server's §5.6 CONNECT checks.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { connect as h2connect, constants as h2constants } from 'node:http2';
import { connect as netConnect, createServer as createNetServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { after, before, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { relay } from '../relay.ts';
import { HboneClient } from './client.ts';
import { HboneError, HboneErrorCode } from './error.ts';
import { baggageHeader, forwardedHeader, traceparent } from './headers.ts';
import type { TunnelEnd } from './server.ts';
import { clientOptions } from './tls.ts';
import { certs, connectUpstream, roundTrip, startServer } from './testing.ts';
import type { Certs, Harness } from './testing.ts';

let c: Certs;
let h: Harness;
const ends: TunnelEnd[] = [];
const client = new HboneClient();

before(async () => {
  c = await certs();
  h = await startServer(c.server, { onTunnelEnd: (e) => ends.push(e) });
});

after(async () => {
  await client.close();
  await h.close();
  assert.equal(client.sessionCount, 0);
  assert.equal(h.server.sessionCount, 0);
});

function req(authority = `127.0.0.1:${h.echo.port}`) {
  return { cert: c.client, expected: [c.serverId], upstream: { ip: '127.0.0.1', port: h.port }, authority };
}

test('a tunnel moves 8 MiB both ways intact and the server sees the client identity', async () => {
  const data = randomBytes(8 * 1024 * 1024);
  const want = createHash('sha256').update(data).digest('hex');
  const started = process.hrtime.bigint();
  const { tunnel, responseHeaders } = await client.open({
    ...req(),
    headers: {
      baggage: baggageHeader({ clusterId: 'Kubernetes', namespace: 'client-ns', workloadType: 'Deployment', workloadName: 'cli' }),
      forwarded: forwardedHeader('10.0.0.1', 4242),
      traceparent: traceparent(),
    },
  });
  assert.equal(responseHeaders[':status'], 200);
  const got = await roundTrip(tunnel, data);
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  assert.equal(got.bytes, data.length);
  assert.equal(got.hash, want);
  // Informative: 8 MiB each way.
  process.stdout.write(`# hbone 8 MiB echo: ${((2 * data.length) / 1e6 / secs).toFixed(1)} MB/s (both directions, ${(secs * 1000).toFixed(0)} ms)\n`);

  const r = h.requests.at(-1);
  assert.ok(r);
  assert.deepEqual(r.peer, c.clientId);
  assert.deepEqual(r.authority, { kind: 'ip', host: '127.0.0.1', port: h.echo.port });
  assert.equal(r.peerAddress.ip, '127.0.0.1');
  assert.equal(r.localAddress.port, h.port);
  assert.equal(r.headers.baggage, 'k8s.cluster.name=Kubernetes,k8s.namespace.name=client-ns,k8s.deployment.name=cli');
  assert.equal(r.headers.forwarded, 'for="10.0.0.1:4242"');
  assert.match(String(r.headers.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);

  await waitFor(() => ends.length > 0);
  const end = ends.at(-1);
  assert.ok(end);
  assert.equal(end.bytesIn, data.length);
  assert.equal(end.bytesOut, data.length);
  assert.equal(end.reason, 'closed');
  assert.deepEqual(end.peer, c.clientId);
});

test('the 200 goes out only after the handler has an upstream', async () => {
  let release: () => void = () => undefined;
  const gate = new Promise<void>((r) => { release = r; });
  const slow = await startServer(c.server, {
    handler: async () => {
      await gate;
      const d = await connectUpstream(slow.echo.port);
      return d.status === 200 ? { ...d, baggage: 'k8s.namespace.name=server-ns,service.name=srv' } : d;
    },
  });
  const local = new HboneClient();
  try {
    let resolved = false;
    const p = local.open({ ...req(`127.0.0.1:${slow.echo.port}`), upstream: { ip: '127.0.0.1', port: slow.port } })
      .then((o) => { resolved = true; return o; });
    await waitFor(() => slow.requests.length === 1);
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(resolved, false, 'the client must not see 200 before the upstream exists');
    release();
    const { tunnel: t, responseHeaders } = await p;
    assert.equal(resolved, true);
    assert.equal(responseHeaders.baggage, 'k8s.namespace.name=server-ns,service.name=srv');
    const got = await roundTrip(t, Buffer.from('hello'));
    assert.equal(got.bytes, 5);
  } finally {
    await local.close();
    await slow.close();
  }
});

test('a client reset while the handler connects aborts its signal and drops the upstream', async () => {
  let signal: AbortSignal | undefined;
  let release: () => void = () => undefined;
  const gate = new Promise<void>((r) => { release = r; });
  let upstreamDestroyed = false;
  const slow = await startServer(c.server, {
    handler: async (r) => {
      signal = r.signal;
      await gate;
      const d = await connectUpstream(slow.echo.port);
      if (d.status === 200) d.upstream.once('close', () => { upstreamDestroyed = true; });
      return d;
    },
  });
  const local = new HboneClient({ connectTimeoutMs: 2000 });
  try {
    const p = local.connect({ ...req(), upstream: { ip: '127.0.0.1', port: slow.port } });
    const settled = p.then(() => 'resolved', () => 'rejected');
    await waitFor(() => signal !== undefined);
    local.destroy(); // resets the stream and the session
    assert.equal(await settled, 'rejected');
    await waitFor(() => signal?.aborted === true);
    release();
    await waitFor(() => upstreamDestroyed);
  } finally {
    release();
    await slow.close();
  }
});

test('a refused TCP connect is flagged CONNECT, not a TLS failure', async () => {
  const dead = await startServer(c.server);
  const port = dead.port;
  await dead.close();
  const local = new HboneClient();
  try {
    await assert.rejects(local.connect({ ...req(), upstream: { ip: '127.0.0.1', port } }),
      (err: unknown) => err instanceof HboneError && err.flag === 'CONNECT' && err.code === HboneErrorCode.TCP);
  } finally {
    await local.close();
  }
});

test('accept() serves a TCP connection accepted by another listener', async () => {
  const own = await startServer(c.server);
  const outer = createNetServer((sock) => { own.server.accept(sock); });
  await new Promise<void>((r) => { outer.listen(0, '127.0.0.1', r); });
  const addr = outer.address();
  assert.ok(addr !== null && typeof addr === 'object');
  const local = new HboneClient();
  try {
    const t = await local.connect({ ...req(`127.0.0.1:${own.echo.port}`), upstream: { ip: '127.0.0.1', port: addr.port } });
    const got = await roundTrip(t, Buffer.from('via accept'));
    assert.equal(got.bytes, 10);
    assert.deepEqual(own.requests.at(-1)?.peer, c.clientId);
  } finally {
    await local.close();
    await new Promise<void>((r) => { outer.close(() => { r(); }); });
    await own.close();
  }
});

test('handler statuses 401 and 503 reach the client as HboneError with that status', async () => {
  const deny = await startServer(c.server, {
    handler: (r) => Promise.resolve(r.authority.port === 1 ? { status: 401, reason: 'denied' } : { status: 503, reason: 'no upstream' }),
  });
  const local = new HboneClient();
  try {
    for (const [port, status] of [[1, 401], [2, 503]] as const) {
      await assert.rejects(
        local.connect({ ...req(`127.0.0.1:${port}`), upstream: { ip: '127.0.0.1', port: deny.port } }),
        (err: unknown) => err instanceof HboneError && err.status === status && err.flag === 'CONNECT',
      );
    }
    // The rejected streams released their pool slots; one session served both.
    assert.equal(local.sessionCount, 1);
  } finally {
    await local.close();
    await deny.close();
  }
});

test('a handler that throws is a 503', async () => {
  const bad = await startServer(c.server, { handler: () => Promise.reject(new Error('boom')) });
  const local = new HboneClient();
  try {
    await assert.rejects(local.connect({ ...req(), upstream: { ip: '127.0.0.1', port: bad.port } }),
      (err: unknown) => err instanceof HboneError && err.status === 503);
  } finally {
    await local.close();
    await bad.close();
  }
});

test('an unparseable authority is a 400 and never reaches the handler', async () => {
  const before = h.requests.length;
  for (const authority of ['not-an-authority', '127.0.0.1:99999', '::1:80', '300.1.1.1:80', 'host:0']) {
    await assert.rejects(client.connect(req(authority)),
      (err: unknown) => err instanceof HboneError && err.status === 400, authority);
  }
  assert.equal(h.requests.length, before);
});

test('hostname and [v6] authorities are accepted and parsed', async () => {
  const seen = await startServer(c.server, { handler: () => Promise.resolve({ status: 503, reason: 'test' }) });
  const local = new HboneClient();
  try {
    for (const authority of ['reviews.default.svc.cluster.local:9080', '[fd00::1]:8080']) {
      await assert.rejects(local.connect({ ...req(authority), upstream: { ip: '127.0.0.1', port: seen.port } }),
        (err: unknown) => err instanceof HboneError && err.status === 503);
    }
    assert.deepEqual(seen.requests.map((r) => r.authority), [
      { kind: 'hostname', host: 'reviews.default.svc.cluster.local', port: 9080 },
      { kind: 'ip', host: 'fd00::1', port: 8080 },
    ]);
  } finally {
    await local.close();
    await seen.close();
  }
});

test('a method other than CONNECT is a 400', async () => {
  const before = h.requests.length;
  const tls = tlsConnect({ ...clientOptions(c.client, [c.serverId]), host: '127.0.0.1', port: h.port });
  const session = h2connect(`https://127.0.0.1:${h.port}`, { createConnection: () => tls });
  try {
    const status = await new Promise<unknown>((resolve, reject) => {
      const s = session.request({ ':method': 'GET', ':path': '/' });
      s.once('response', (hd) => { resolve(hd[':status']); });
      s.once('error', reject);
      s.resume();
      s.end();
    });
    assert.equal(status, 400);
    assert.equal(h.requests.length, before);
  } finally {
    await new Promise<void>((r) => { session.close(() => { r(); }); });
  }
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('tunnels the server side closes first end with END_STREAM, never a reset: a session outlives its peer\'s rapid-reset guard', async () => {
  // An app that answers and closes (HTTP/1.1 `Connection: close`), a client
  // that closes once it has the answer: the relay sees the server's end
  // first. Resetting the stream then, while the TLS write of the client's
  // END_STREAM is in flight, sends RST_STREAM, and nghttp2 (the peer's)
  // ends the whole session with GOAWAY after about a thousand of those.
  const app = createNetServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    s.once('data', () => { s.end('reply'); });
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  const appPort = (app.address() as AddressInfo).port;
  const server = await startServer(c.server, { handler: (r) => connectUpstream(r.authority.port) });
  const local = new HboneClient();
  const pods = createNetServer({ allowHalfOpen: true });
  await new Promise<void>((r) => pods.listen(0, '127.0.0.1', r));
  const podPort = (pods.address() as AddressInfo).port;
  // Accepted pod-side sockets, matched to their clients by port.
  const arrived = new Map<number, Socket>();
  const waiting = new Map<number, (s: Socket) => void>();
  pods.on('connection', (s: Socket) => {
    const port = s.remotePort ?? 0;
    const w = waiting.get(port);
    if (w === undefined) arrived.set(port, s);
    else { waiting.delete(port); w(s); }
  });
  const podSideOf = async (client: Socket): Promise<Socket> => {
    await new Promise((r) => client.once('connect', r));
    const port = client.localPort ?? 0;
    const s = arrived.get(port);
    if (s !== undefined) { arrived.delete(port); return s; }
    return new Promise((r) => waiting.set(port, r));
  };
  // Sixteen at a time, as a loaded client would: a destroy then often
  // lands while the session's previous TLS write is still in flight.
  const WORKERS = 16;
  const EACH = 100;
  let clean = 0;
  let failure = '';
  const one = async (): Promise<void> => {
    const client = netConnect({ port: podPort, host: '127.0.0.1', allowHalfOpen: true });
    client.on('error', () => undefined);
    const pod = await podSideOf(client);
    let tunnel: Duplex;
    try {
      tunnel = await local.connect({ ...req(`127.0.0.1:${appPort}`), upstream: { ip: '127.0.0.1', port: server.port } });
    } catch (err) {
      failure ||= (err as Error).message;
      client.destroy();
      pod.destroy();
      return;
    }
    const done = relay(pod, tunnel);
    const got: Buffer[] = [];
    client.on('data', (d: Buffer) => got.push(d));
    const closed = new Promise((res) => client.once('close', res));
    client.write('request');
    await Promise.race([new Promise((r) => client.once('end', r)), closed]);
    client.end();
    const r = await done;
    await closed;
    if (r.error === undefined && Buffer.concat(got).toString() === 'reply') clean++;
    else failure ||= r.error?.message ?? `got '${Buffer.concat(got).toString()}'`;
  };
  // And a bulk tunnel on the same session, echoing all along, keeps its TLS
  // writes busy, as other pods' traffic does on a node.
  const bulk = await local.connect({ ...req(`127.0.0.1:${server.echo.port}`), upstream: { ip: '127.0.0.1', port: server.port } });
  bulk.on('data', () => undefined);
  const stop = new AbortController();
  const pump = (async () => {
    const chunk = randomBytes(64 * 1024);
    bulk.on('error', () => undefined);
    const gone = new Promise((r) => bulk.once('close', r));
    while (!stop.signal.aborted && !bulk.destroyed) if (!bulk.write(chunk)) await Promise.race([new Promise((r) => bulk.once('drain', r)), gone]);
    bulk.end();
  })();
  await Promise.all(Array.from({ length: WORKERS }, async () => {
    for (let i = 0; i < EACH && failure === ''; i++) await one();
  }));
  stop.abort();
  await pump;
  assert.equal(failure, '');
  assert.equal(clean, WORKERS * EACH);
  assert.equal(local.sessionCount, 1, 'one session carried them all');
  await local.close();
  await server.close();
  app.close();
  pods.close();
});

test('a client resetting tunnel after tunnel (aborted connections) does not get its session ended under the tunnels still open', async () => {
  // ztunnel resets the stream when its client aborts a connection. Node's
  // HTTP/2 server ends a session with GOAWAY after 1000 RST_STREAMs (then 33
  // a second) unless told otherwise; ztunnel's server does not. A long-lived
  // tunnel on the same session must outlive 2000 aborted ones.
  const local = new HboneClient();
  const long = await local.connect(req());
  const echoed: Buffer[] = [];
  long.on('data', (d: Buffer) => echoed.push(d));
  long.on('error', () => undefined);
  let aborted = 0;
  let failure = '';
  for (let i = 0; i < 2000 && failure === ''; i++) {
    try {
      const { tunnel } = await local.open(req());
      const closed = new Promise((r) => tunnel.once('close', r));
      tunnel.on('error', () => undefined);
      tunnel.close(h2constants.NGHTTP2_CANCEL);
      await closed;
      aborted++;
    } catch (err) {
      failure = `tunnel ${i}: ${(err as Error).message}`;
    }
  }
  assert.equal(failure, '');
  assert.equal(aborted, 2000);
  long.end('still here');
  await new Promise((r) => long.once('end', r));
  assert.equal(Buffer.concat(echoed).toString(), 'still here');
  assert.equal(local.sessionCount, 1);
  await local.close();
});

/** An HTTP/2 session to `port` with the client certificate, without HboneClient's pooling. */
function rawSession(port: number): ReturnType<typeof h2connect> {
  const tls = tlsConnect({ ...clientOptions(c.client, [c.serverId]), host: '127.0.0.1', port });
  return h2connect(`https://127.0.0.1:${port}`, { createConnection: () => tls });
}

test('rapid reset (CONNECT then RST_STREAM in one burst) gets the session GOAWAY ENHANCE_YOUR_CALM past 20 pending resets, as ztunnel\'s h2 peer', { timeout: 20_000 }, async () => {
  // h2's server default max_pending_accept_reset_streams is 20; nghttp2's
  // own bucket (raised for aborted tunnels) would let 10k through.
  let handled = 0;
  const server = await startServer(c.server, {
    handler: async (r) => {
      handled++;
      // A connect that takes a while, given up as soon as the client resets.
      await new Promise((resolve) => { const t = setTimeout(resolve, 500); r.signal.addEventListener('abort', () => { clearTimeout(t); resolve(undefined); }); });
      return r.signal.aborted ? { status: 503, reason: 'client went away' } : connectUpstream(server.echo.port);
    },
  });
  const session = rawSession(server.port);
  session.on('error', () => undefined);
  try {
    await new Promise<void>((r) => { session.once('connect', () => { r(); }); });
    const goaway = new Promise<number>((resolve) => { session.once('goaway', (code: number) => { resolve(code); }); });
    for (let i = 0; i < 200; i++) {
      const s = session.request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${server.echo.port}` }, { endStream: false });
      s.on('error', () => undefined);
      s.close(h2constants.NGHTTP2_CANCEL);
    }
    assert.equal(await goaway, h2constants.NGHTTP2_ENHANCE_YOUR_CALM);
    await waitFor(() => server.server.sessionCount === 0);
    assert.ok(handled <= 200, `handled ${handled}`);
  } finally {
    session.destroy();
    await server.close();
  }
});

test('a client aborting tunnels one at a time while they connect keeps its session (resets never pile up)', { timeout: 20_000 }, async () => {
  const server = await startServer(c.server, {
    handler: async (r) => {
      await new Promise((resolve) => { const t = setTimeout(resolve, 500); r.signal.addEventListener('abort', () => { clearTimeout(t); resolve(undefined); }); });
      return r.signal.aborted ? { status: 503, reason: 'client went away' } : connectUpstream(server.echo.port);
    },
  });
  const session = rawSession(server.port);
  let goaway = false;
  session.on('goaway', () => { goaway = true; });
  session.on('error', () => undefined);
  try {
    for (let i = 0; i < 100; i++) {
      const s = session.request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${server.echo.port}` }, { endStream: false });
      s.on('error', () => undefined);
      await waitFor(() => server.requests.length === i + 1);
      const closed = new Promise((r) => s.once('close', r));
      s.close(h2constants.NGHTTP2_CANCEL);
      await closed;
    }
    assert.equal(goaway, false);
    assert.equal(server.server.sessionCount, 1);
  } finally {
    session.destroy();
    await server.close();
  }
});

test('a stream whose handling throws after the handler (a bug) is reset alone: reported, its upstream closed, the session serves on', { timeout: 20_000 }, async () => {
  const failures: unknown[] = [];
  let upstreamClosed = false;
  let bad = true;
  const server = await startServer(c.server, {
    handler: async () => {
      const d = await connectUpstream(server.echo.port);
      if (d.status !== 200) return d;
      if (!bad) return d;
      bad = false;
      d.upstream.once('close', () => { upstreamClosed = true; });
      // A bug after the handler: the tunnel's first listener throws.
      const on = d.upstream.on.bind(d.upstream);
      d.upstream.on = ((event: string, fn: (...args: unknown[]) => void) => {
        if (event === 'error') throw new Error('broken upstream');
        return on(event, fn);
      }) as typeof d.upstream.on;
      return d;
    },
    onStreamError: (err) => { failures.push(err); },
  });
  const local = new HboneClient();
  try {
    // The 200 may already be out when the bug strikes: then the tunnel is reset.
    const first = await local.connect({ ...req(), upstream: { ip: '127.0.0.1', port: server.port } }).then(async (t) => {
      t.on('error', () => undefined);
      await new Promise((r) => t.once('close', r));
      return 'reset';
    }, () => 'refused');
    assert.ok(['reset', 'refused'].includes(first));
    await waitFor(() => failures.length === 1 && upstreamClosed);
    assert.match(String(failures[0]), /broken upstream/);
    const t = await local.connect({ ...req(), upstream: { ip: '127.0.0.1', port: server.port } });
    const got = await roundTrip(t, Buffer.from('after'));
    assert.equal(got.bytes, 5);
    assert.equal(local.sessionCount, 1, 'the same session served the next tunnel');
  } finally {
    await local.close();
    await server.close();
  }
});
