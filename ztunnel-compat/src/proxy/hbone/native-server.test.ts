// SPDX-License-Identifier: Apache-2.0
// The native engine's 15008 server against the JavaScript HboneClient (and
// Node's own TLS and HTTP/2 for the odd requests): real TLS 1.3 + HTTP/2 on
// 127.0.0.1, the handler and its checks in TypeScript, an echo upstream.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { connect as h2connect } from 'node:http2';
import { connect as netConnect, createServer as createNetServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { closeSync } from 'node:fs';
import { hboneEngineUnavailable, native } from '@skein/bpf';
import { skipUnless } from '../../../../test/skips.ts';
import { HboneClient } from './client.ts';
import { HboneError } from './error.ts';
import { NativeHboneClient } from './native-client.ts';
import { NativeHboneServer } from './native-server.ts';
import type {
  CarriedEnd, CertificateRefusal, ConnectHandler, ConnectRequest, HandshakeRejection, HboneServerOptions, StreamRejection, TunnelCarrier, TunnelEnd,
} from './server.ts';
import { WorkloadCertificate } from '../../identity/certificate.ts';
import type { CertificateSource } from '../../identity/certificate.ts';
import { createCsr } from '../../identity/csr.ts';
import { LocalCa } from '../../identity/local-ca.ts';
import type { Identity } from '../../identity/spiffe.ts';
import { certs, connectUpstream, echoServer, patternSource, roundTrip } from './testing.ts';
import type { Certs, Echo } from './testing.ts';
import { clientOptions } from './tls.ts';

// setup builds the engine: its absence fails these tests (test/skips.ts).
const skip = skipUnless({ what: 'the native HBONE engine', missing: hboneEngineUnavailable(), impossible: false });
let c: Certs;
let engine: NativeHboneClient;
let echo: Echo;
let server: NativeHboneServer;
let listener: Server;
let port: number;
let handler: ConnectHandler;
const requests: ConnectRequest[] = [];
const ends: TunnelEnd[] = [];
const rejects: StreamRejection[] = [];
const handshakeRejects: HandshakeRejection[] = [];
const client = new HboneClient();

before(async () => {
  if (skip !== false) return;
  c = await certs();
  echo = await echoServer();
  engine = new NativeHboneClient({ workers: 2 });
  handler = () => connectUpstream(echo.port);
  server = new NativeHboneServer(engine, c.server, {
    handler: (r) => { requests.push(r); return handler(r); },
    onTunnelEnd: (e) => ends.push(e),
    onReject: (r) => rejects.push(r),
    onHandshakeReject: (r) => handshakeRejects.push(r),
  });
  // Stands in for a pod's 15008 listener.
  listener = createNetServer((s) => { server.accept(s); });
  await new Promise<void>((resolve) => { listener.listen(0, '127.0.0.1', resolve); });
  port = (listener.address() as AddressInfo).port;
});

after(async () => {
  if (skip !== false) return;
  await client.close(1000);
  await server.close(1000);
  engine.close();
  await new Promise<void>((resolve) => { listener.close(() => { resolve(); }); });
  await echo.close();
});

function req(authority = `127.0.0.1:${echo.port}`) {
  return { cert: c.client, expected: [c.serverId], upstream: { ip: '127.0.0.1', port }, authority };
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('the native server carries 8 MiB both ways; the handler sees the client identity, authority and headers', { skip }, async () => {
  const data = randomBytes(8 * 1024 * 1024);
  const want = createHash('sha256').update(data).digest('hex');
  const { tunnel, responseHeaders } = await client.open({ ...req(), headers: { baggage: 'k8s.namespace.name=client-ns', forwarded: 'for="10.0.0.1:4242"' } });
  assert.equal(responseHeaders[':status'], 200);
  const got = await roundTrip(tunnel, data);
  assert.equal(got.bytes, data.length);
  assert.equal(got.hash, want);
  const r = requests.at(-1);
  assert.ok(r);
  assert.deepEqual(r.peer, c.clientId);
  assert.deepEqual(r.authority, { kind: 'ip', host: '127.0.0.1', port: echo.port });
  assert.equal(r.peerAddress.ip, '127.0.0.1');
  assert.equal(r.localAddress.port, port);
  assert.equal(r.headers.baggage, 'k8s.namespace.name=client-ns');
  assert.equal(r.headers.forwarded, 'for="10.0.0.1:4242"');
  await waitFor(() => ends.length > 0);
  const e = ends.at(-1);
  assert.ok(e);
  assert.equal(e.bytesIn, data.length);
  assert.equal(e.bytesOut, data.length);
  assert.equal(e.reason, 'closed');
  assert.deepEqual(e.peer, c.clientId);
});

test('the 200 carries the handler\'s baggage and goes out only once the handler has an upstream', { skip }, async () => {
  let release: () => void = () => undefined;
  const gate = new Promise<void>((r) => { release = r; });
  handler = async () => {
    await gate;
    const d = await connectUpstream(echo.port);
    return d.status === 200 ? { ...d, baggage: 'k8s.namespace.name=server-ns,service.name=srv' } : d;
  };
  try {
    let resolved = false;
    const p = client.open(req()).then((o) => { resolved = true; return o; });
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(resolved, false, 'no 200 before the upstream exists');
    release();
    const { tunnel, responseHeaders } = await p;
    assert.equal(responseHeaders.baggage, 'k8s.namespace.name=server-ns,service.name=srv');
    assert.equal((await roundTrip(tunnel, Buffer.from('hello'))).bytes, 5);
  } finally {
    handler = () => connectUpstream(echo.port);
  }
});

test('handler statuses 401 and 503 reach the client as HboneError with that status, and are reported', { skip }, async () => {
  for (const status of [401, 503] as const) {
    handler = () => Promise.resolve({ status, reason: `no (${status})` });
    await assert.rejects(client.open(req()), (e: unknown) => e instanceof HboneError && e.status === status);
    const r = rejects.at(-1);
    assert.ok(r);
    assert.equal(r.status, status);
    assert.deepEqual(r.peer, c.clientId);
  }
  handler = () => connectUpstream(echo.port);
});

test('an unparseable authority is a 400 and never reaches the handler', { skip }, async () => {
  const before = requests.length;
  // The JavaScript server's cases (hbone.test.ts).
  for (const authority of ['not-an-authority', '127.0.0.1:99999', '::1:80', '300.1.1.1:80', 'host:0']) {
    await assert.rejects(client.connect(req(authority)), (e: unknown) => e instanceof HboneError && e.status === 400, authority);
  }
  assert.equal(requests.length, before);
  assert.equal(rejects.at(-1)?.status, 400);
});

test('a method other than CONNECT is a 400', { skip }, async () => {
  const session = h2connect(`https://127.0.0.1:${port}`, { createConnection: () => tlsConnect({ ...clientOptions(c.client, [c.serverId]), host: '127.0.0.1', port }) });
  try {
    const status = await new Promise<number>((resolve, reject) => {
      const s = session.request({ ':method': 'GET', ':path': '/' });
      s.once('response', (h) => { resolve(Number(h[':status'])); });
      s.once('error', reject);
      s.end();
    });
    assert.equal(status, 400);
  } finally {
    session.destroy();
  }
});

test('what the handler wrote to the upstream before answering (a PROXY header) reaches it before the client\'s bytes', { skip }, async () => {
  const seen: Buffer[] = [];
  const recorder = createNetServer({ allowHalfOpen: true }, (s) => { s.on('data', (d: Buffer) => seen.push(d)); s.on('end', () => { s.end(); }); });
  await new Promise<void>((resolve) => { recorder.listen(0, '127.0.0.1', resolve); });
  handler = async () => {
    const d = await connectUpstream((recorder.address() as AddressInfo).port);
    if (d.status === 200) d.upstream.write(Buffer.alloc(8 * 1024 * 1024, 0x50));
    return d;
  };
  try {
    const tunnel = await client.connect(req());
    await roundTrip(tunnel, Buffer.from('client bytes'));
    const all = Buffer.concat(seen);
    assert.equal(all.length, 8 * 1024 * 1024 + 'client bytes'.length);
    assert.equal(all.subarray(8 * 1024 * 1024).toString(), 'client bytes');
  } finally {
    handler = () => connectUpstream(echo.port);
    await new Promise<void>((resolve) => { recorder.close(() => { resolve(); }); });
  }
});

test('a client from another trust domain or with a foreign root gets no stream', { skip }, async () => {
  const before = requests.length;
  for (const cert of [c.otherTrustDomain, c.foreignRoot]) {
    const other = new HboneClient();
    try {
      await assert.rejects(other.open({ ...req(), cert }), (e: unknown) => e instanceof HboneError);
    } finally {
      other.destroy();
    }
  }
  assert.equal(requests.length, before);
  await waitFor(() => handshakeRejects.length >= 2);
  assert.match(handshakeRejects.map((r) => r.error.message).join('\n'), /not in trust domain cluster\.local/);
});

test('an upstream that closes first ends the tunnel cleanly both ways', { skip }, async () => {
  const greeter = createNetServer({ allowHalfOpen: true }, (s) => { s.end('bye'); s.resume(); });
  await new Promise<void>((resolve) => { greeter.listen(0, '127.0.0.1', resolve); });
  handler = () => connectUpstream((greeter.address() as AddressInfo).port);
  try {
    const n = ends.length;
    const tunnel = await client.connect(req());
    const chunks: Buffer[] = [];
    tunnel.on('data', (d: Buffer) => chunks.push(d));
    await new Promise<void>((resolve) => { tunnel.once('end', resolve); });
    assert.equal(Buffer.concat(chunks).toString(), 'bye');
    tunnel.end('thanks');
    await waitFor(() => ends.length > n);
    assert.equal(ends.at(-1)?.reason, 'closed');
    assert.equal(ends.at(-1)?.bytesOut, 3);
    assert.equal(ends.at(-1)?.bytesIn, 6);
  } finally {
    handler = () => connectUpstream(echo.port);
    await new Promise<void>((resolve) => { greeter.close(() => { resolve(); }); });
  }
});

/** Open fds of this process before and after 300 tunnels through the server (10 at a time), once it is idle again. */
async function fdsAcross300Tunnels(): Promise<[number, number]> {
  await roundTrip(await client.connect(req()), Buffer.from('warm'));
  await waitFor(() => server.activeTunnels === 0);
  const before = readdirSync('/proc/self/fd').length;
  for (let round = 0; round < 30; round++) {
    await Promise.all(Array.from({ length: 10 }, async () => { await roundTrip(await client.connect(req()), Buffer.from('ping')); }));
  }
  await waitFor(() => server.activeTunnels === 0 && engine.stats().streamsLive === 0);
  await new Promise((r) => setTimeout(r, 50));
  return [before, readdirSync('/proc/self/fd').length];
}

test('no fd is left behind across 300 tunnels', { skip }, async () => {
  const [before, after] = await fdsAcross300Tunnels();
  assert.ok(after <= before, `fds: ${before} before, ${after} after`);
});

test('the carrier closes an open tunnel (a policy change): the client sees it reset; its end has the reason and the bytes so far', { skip }, async () => {
  let carrier: TunnelCarrier | undefined;
  const carried: CarriedEnd[] = [];
  handler = async (r) => {
    carrier = r.carrier;
    r.carrier?.onEnd((e) => carried.push(e));
    return connectUpstream(echo.port);
  };
  try {
    const n = ends.length;
    const tunnel = await client.connect(req());
    tunnel.write('12345');
    await new Promise<void>((resolve) => { tunnel.once('data', () => { resolve(); }); });
    assert.ok(carrier, 'the native server gives the handler a carrier');
    const gone = new Promise<void>((resolve) => { tunnel.once('close', () => { resolve(); }); });
    tunnel.on('error', () => undefined);
    carrier.close('connection closed due to policy change: denied');
    await gone;
    await waitFor(() => carried.length === 1 && ends.length > n);
    assert.deepEqual(carried, [{ bytesIn: 5, bytesOut: 5, error: 'connection closed due to policy change: denied' }]);
    assert.equal(ends.at(-1)?.reason, 'connection closed due to policy change: denied');
    await waitFor(() => server.activeTunnels === 0);
  } finally {
    handler = () => connectUpstream(echo.port);
  }
});

test('a carrier closed before the answer makes it a 401; its end still comes, with no bytes', { skip }, async () => {
  const carried: CarriedEnd[] = [];
  handler = async (r) => {
    const d = await connectUpstream(echo.port);
    r.carrier?.onEnd((e) => carried.push(e));
    r.carrier?.close('denied meanwhile');
    return d;
  };
  try {
    await assert.rejects(client.open(req()), (e: unknown) => e instanceof HboneError && e.status === 401);
    assert.equal(rejects.at(-1)?.reason, 'denied meanwhile');
    assert.deepEqual(carried, [{ bytesIn: 0, bytesOut: 0, error: 'denied meanwhile' }]);
  } finally {
    handler = () => connectUpstream(echo.port);
  }
});

/** A handler that has the engine dial 127.0.0.1:port (the carrier's dial), with `header` first. */
function dialing(p: number, header?: Buffer, seen?: (r: ConnectRequest) => void): ConnectHandler {
  return async (r) => {
    seen?.(r);
    assert.ok(r.carrier?.dial, 'the native server offers a dial');
    const failed = await r.carrier.dial({ address: '127.0.0.1', port: p, ...(header === undefined ? {} : { header }) });
    return failed ?? { status: 200, dialed: true };
  };
}

test('the engine dials the upstream for the handler: the header goes first, 8 MiB each way, the end counts the client\'s bytes', { skip }, async () => {
  handler = dialing(echo.port, Buffer.from('HEADER:'));
  try {
    const n = ends.length;
    const data = randomBytes(8 * 1024 * 1024);
    const tunnel = await client.connect(req());
    const got = await roundTrip(tunnel, data);
    // The echo returns what reached it: the header, then the client's bytes.
    assert.equal(got.bytes, 'HEADER:'.length + data.length);
    assert.equal(got.hash, createHash('sha256').update(Buffer.concat([Buffer.from('HEADER:'), data])).digest('hex'));
    await waitFor(() => ends.length > n);
    assert.equal(ends.at(-1)?.reason, 'closed');
    assert.equal(ends.at(-1)?.bytesIn, data.length);
    assert.equal(ends.at(-1)?.bytesOut, 'HEADER:'.length + data.length);
    await waitFor(() => server.activeTunnels === 0);
  } finally {
    handler = () => connectUpstream(echo.port);
  }
});

test('a dial the upstream refuses is a 503 with the reason, and no tunnel end', { skip }, async () => {
  // A port with nothing listening: bound, never listened on.
  const fd = native.createSocket(4, 'stream', -1);
  native.bind(fd, '127.0.0.1', 0);
  const refused = native.localAddress(fd).port;
  handler = dialing(refused);
  try {
    const n = ends.length;
    await assert.rejects(client.open(req()), (e: unknown) => e instanceof HboneError && e.status === 503);
    await waitFor(() => rejects.at(-1)?.status === 503);
    assert.match(rejects.at(-1)?.reason ?? '', new RegExp(`connect to 127\\.0\\.0\\.1:${refused} failed: .*refused`, 'i'));
    assert.equal(ends.length, n);
    assert.equal(server.activeTunnels, 0);
  } finally {
    handler = () => connectUpstream(echo.port);
    closeSync(fd);
  }
});

/** A port whose SYNs are dropped (a listener with a full accept queue), so a dial to it waits. */
async function unanswered(): Promise<{ port: number; close: () => void }> {
  const fd = native.createSocket(4, 'stream', -1);
  native.bind(fd, '127.0.0.1', 0);
  native.listen(fd, 0);
  const port = native.localAddress(fd).port;
  const filler = netConnect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve) => { filler.once('connect', () => { resolve(); }); });
  return { port, close: () => { filler.destroy(); closeSync(fd); } };
}

test('a carrier closed while the engine dials makes it a 401 with the reason', { skip }, async () => {
  const { port: full, close: closeFull } = await unanswered();
  let carrier: TunnelCarrier | undefined;
  handler = dialing(full, undefined, (r) => { carrier = r.carrier; });
  try {
    const answer = assert.rejects(client.open(req()), (e: unknown) => e instanceof HboneError && e.status === 401);
    await waitFor(() => carrier !== undefined);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(server.activeTunnels, 0, 'still dialling');
    carrier?.close('connection closed due to policy change: denied');
    await answer;
    await waitFor(() => rejects.at(-1)?.status === 401);
    assert.equal(rejects.at(-1)?.reason, 'connection closed due to policy change: denied');
  } finally {
    handler = () => connectUpstream(echo.port);
    closeFull();
  }
});

test('a dial that does not connect within the connect timeout is a 503 that says so', { skip }, async () => {
  // An engine of its own, with a short connect timeout.
  const { port: full, close: closeFull } = await unanswered();
  const quick = new NativeHboneClient({ workers: 1, connectTimeoutMs: 300 });
  const failures: StreamRejection[] = [];
  const own = new NativeHboneServer(quick, c.server, { handler: dialing(full), onReject: (r) => failures.push(r) });
  const l = createNetServer((s) => { own.accept(s); });
  await new Promise<void>((resolve) => { l.listen(0, '127.0.0.1', resolve); });
  try {
    const t0 = Date.now();
    await assert.rejects(client.open({ ...req(), upstream: { ip: '127.0.0.1', port: (l.address() as AddressInfo).port } }), (e: unknown) => e instanceof HboneError && e.status === 503);
    assert.ok(Date.now() - t0 < 3000, 'within the timeout and one tick of the engine');
    await waitFor(() => failures.length > 0);
    assert.match(failures[0]?.reason ?? '', new RegExp(`connect to 127\\.0\\.0\\.1:${full} failed: connection timed out after 300 ms`));
  } finally {
    own.destroy();
    await new Promise<void>((resolve) => { l.close(() => { resolve(); }); });
    quick.close();
    closeFull();
  }
});

test('the server updates its TLS keys every keyUpdateRecords records it sends; Node\'s TLS client, and an engine client updating its own, read on', { skip }, async () => {
  const rekeying = new NativeHboneClient({ workers: 1, keyUpdateRecords: 16 });
  const own = await ownServer(c.server, {}, rekeying);
  const upstream = { ip: '127.0.0.1', port: own.port };
  try {
    const data = randomBytes(4 * 1024 * 1024);
    const tunnel = await client.connect({ ...req(), upstream });
    const got = await roundTrip(tunnel, data);
    assert.equal(got.bytes, data.length);
    assert.equal(got.hash, createHash('sha256').update(data).digest('hex'));
    // 4 MiB back is 256 full records at least: one update per 16.
    assert.ok(rekeying.stats().keyUpdates >= 8, `key updates: ${rekeying.stats().keyUpdates}`);

    // Engine to engine, both updating: each side's reads follow the other's KeyUpdates.
    const pods = createNetServer({ allowHalfOpen: true });
    await new Promise<void>((resolve) => { pods.listen(0, '127.0.0.1', resolve); });
    const accepted = new Promise<Socket>((resolve) => { pods.once('connection', resolve); });
    const app = netConnect({ host: '127.0.0.1', port: (pods.address() as AddressInfo).port, allowHalfOpen: true });
    const pod = await accepted;
    pods.close();
    const before = rekeying.stats().keyUpdates;
    const native = await rekeying.open(pod, { ...req(), upstream });
    const back = await roundTrip(app, data);
    assert.equal(back.bytes, data.length);
    assert.equal(back.hash, createHash('sha256').update(data).digest('hex'));
    await native.done;
    // Both directions now: the client's 4 MiB out and the server's 4 MiB back.
    assert.ok(rekeying.stats().keyUpdates - before >= 16, `key updates: ${rekeying.stats().keyUpdates - before}`);
    app.destroy();
  } finally {
    await own.close();
    rekeying.close();
  }
});

test('no fd is left behind across 300 dialled tunnels', { skip }, async () => {
  handler = dialing(echo.port);
  try {
    const [before, after] = await fdsAcross300Tunnels();
    assert.ok(after <= before, `fds: ${before} before, ${after} after`);
  } finally {
    handler = () => connectUpstream(echo.port);
  }
});

/** A server of its own (on the shared engine unless given one), for tests that close it or give it certificates or limits. */
async function ownServer(cert: WorkloadCertificate | CertificateSource, opts: Partial<HboneServerOptions> = {}, on: NativeHboneClient = engine): Promise<{ server: NativeHboneServer; port: number; close: () => Promise<void> }> {
  const own = new NativeHboneServer(on, cert, { handler: () => connectUpstream(echo.port), ...opts });
  const l = createNetServer((s) => { own.accept(s); });
  await new Promise<void>((resolve) => { l.listen(0, '127.0.0.1', resolve); });
  return {
    server: own,
    port: (l.address() as AddressInfo).port,
    close: async () => {
      own.destroy();
      await new Promise<void>((resolve) => { l.close(() => { resolve(); }); });
    },
  };
}

/** The serial of the certificate a TLS handshake to `p` is served (decimal, as ours). */
async function servedSerial(p: number, expected: Identity): Promise<string> {
  const s = tlsConnect({ ...clientOptions(c.client, [expected]), host: '127.0.0.1', port: p });
  try {
    await new Promise<void>((resolve, reject) => { s.once('secureConnect', () => { resolve(); }); s.once('error', reject); });
    return BigInt(`0x${s.getPeerX509Certificate()?.serialNumber ?? '0'}`).toString(10);
  } finally {
    s.destroy();
  }
}

test('close(grace) sends GOAWAY: an open tunnel finishes, close resolves when it ends, and new connections are not served', { skip }, async () => {
  const own = await ownServer(c.server);
  const h2 = new HboneClient();
  try {
    const r = { ...req(), upstream: { ip: '127.0.0.1', port: own.port } };
    const tunnel = await h2.connect(r);
    let closed = false;
    const closing = own.server.close(10_000).then(() => { closed = true; });
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(closed, false, 'waits for the open tunnel');
    const got = await roundTrip(tunnel, Buffer.from('after goaway'));
    assert.equal(got.bytes, 'after goaway'.length);
    await closing;
    assert.equal(own.server.sessionCount, 0);
    // Closed: a new connection is not served.
    await assert.rejects(new HboneClient({ connectTimeoutMs: 2000 }).connect(r), HboneError);
  } finally {
    await h2.close(100);
    await own.close();
  }
});

test('close(grace) closes what is still open after the grace', { skip }, async () => {
  const own = await ownServer(c.server);
  const h2 = new HboneClient();
  try {
    const tunnel = await h2.connect({ ...req(), upstream: { ip: '127.0.0.1', port: own.port } });
    tunnel.on('error', () => undefined);
    const gone = new Promise((resolve) => { tunnel.once('close', resolve); });
    const t0 = Date.now();
    await own.server.close(300);
    assert.ok(Date.now() - t0 < 3000);
    await gone;
    assert.equal(own.server.sessionCount, 0);
  } finally {
    await h2.close(100);
    await own.close();
  }
});

test('certificates come from the source: a rotation serves new handshakes, an expired one is never served', { skip, timeout: 20_000 }, async () => {
  const ca = await LocalCa.generate();
  const issue = async (ttlS: number): Promise<WorkloadCertificate> => {
    const { csrPem, keyPem } = await createCsr(c.serverId);
    return WorkloadCertificate.fromCertChain(c.serverId, [await ca.sign(csrPem, ttlS), ca.rootPem], keyPem);
  };
  const first = await issue(2);
  const second = await issue(3600);
  let cert: WorkloadCertificate | undefined = first;
  const subs: ((x: WorkloadCertificate) => void)[] = [];
  const source: CertificateSource = {
    current: () => (cert?.isExpired() === false ? cert : undefined),
    fetch: () => (cert?.isExpired() === false ? Promise.resolve(cert) : Promise.reject(new Error('the CA is down'))),
    subscribe: (fn) => { subs.push(fn); return () => undefined; },
  };
  const refusals: CertificateRefusal[] = [];
  const own = await ownServer(source, { onCertificateRefused: (r) => refusals.push(r), certificateWaitMs: 500 });
  // Our test client trusts the test CA of `certs()`; this one's root differs, so only the handshake's served serial is read.
  const serialOf = async (): Promise<string> => {
    const s = tlsConnect({ host: '127.0.0.1', port: own.port, ALPNProtocols: ['h2'], cert: c.client.chainPems.join(''), key: c.client.keyPem, rejectUnauthorized: false, minVersion: 'TLSv1.3' });
    try {
      await new Promise<void>((resolve, reject) => { s.once('secureConnect', () => { resolve(); }); s.once('error', reject); s.once('close', () => { reject(new Error('closed before TLS')); }); });
      return BigInt(`0x${s.getPeerX509Certificate()?.serialNumber ?? '0'}`).toString(10);
    } finally {
      s.destroy();
    }
  };
  try {
    assert.equal(await serialOf(), first.serial);
    cert = second;
    for (const fn of subs) fn(second);
    assert.equal(own.server.certificate, second);
    assert.equal(await serialOf(), second.serial, 'the new handshake got the rotated certificate');
    // No valid certificate at all: refused before TLS, as unavailable then expired.
    cert = first;
    await new Promise((r) => setTimeout(r, Math.max(0, first.notAfter.getTime() - Date.now()) + 100));
    assert.ok(first.isExpired());
    await assert.rejects(serialOf());
    await waitFor(() => refusals.length === 1);
    assert.equal(refusals[0]?.peerAddress.ip, '127.0.0.1');
  } finally {
    await own.close();
  }
  // A fixed certificate that has expired is refused the same way, as expired.
  const fixed: CertificateRefusal[] = [];
  const own2 = await ownServer(first, { onCertificateRefused: (r) => fixed.push(r) });
  try {
    await assert.rejects(servedSerial(own2.port, c.serverId));
    await waitFor(() => fixed.length === 1);
    assert.equal(fixed[0]?.reason, 'expired');
  } finally {
    await own2.close();
  }
});

test('a client that stops reading fills the engine\'s TLS socket: its writes wait and resume, every byte in order', { skip, timeout: 60_000 }, async () => {
  // The upstream is another process (this one's event loop is stalled below).
  const size = 8 * 1024 * 1024;
  const source = await patternSource(size);
  try {
    const want = createHash('sha256').update(source.pattern).digest('hex');
    handler = () => connectUpstream(source.port);
    const tunnels = await Promise.all(Array.from({ length: 4 }, () => client.connect(req())));
    const got = tunnels.map((t) => new Promise<{ bytes: number; hash: string }>((resolve, reject) => {
      const h = createHash('sha256');
      let bytes = 0;
      t.on('data', (d: Buffer) => { bytes += d.length; h.update(d); });
      t.once('end', () => { resolve({ bytes, hash: h.digest('hex') }); });
      t.once('error', reject);
      t.end();
    }));
    // Nobody reads the TLS connection for a while: 32 MiB in flight does not fit the socket buffers.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 700);
    for (const r of await Promise.all(got)) {
      assert.equal(r.bytes, size);
      assert.equal(r.hash, want);
    }
  } finally {
    handler = () => connectUpstream(echo.port);
    source.close();
  }
});

test('a connection that waits for the certificate (none yet) is served once it comes: its ClientHello is left for the engine', { skip, timeout: 20_000 }, async () => {
  let cert: WorkloadCertificate | undefined;
  let arrive: (c: WorkloadCertificate) => void = () => undefined;
  const arrived = new Promise<WorkloadCertificate>((resolve) => { arrive = resolve; });
  const source: CertificateSource = {
    current: () => cert,
    fetch: () => arrived,
  };
  const own = await ownServer(source);
  const late = new HboneClient({ connectTimeoutMs: 5000 });
  try {
    const opening = late.connect({ ...req(), upstream: { ip: '127.0.0.1', port: own.port } });
    // Long enough for Node to have read the ClientHello, had it been reading.
    await new Promise((r) => setTimeout(r, 300));
    cert = c.server;
    arrive(c.server);
    const got = await roundTrip(await opening, Buffer.from('after the wait'));
    assert.equal(got.bytes, 'after the wait'.length);
  } finally {
    await late.close(100);
    await own.close();
  }
});

test('closeTunnel and closeSession check their arguments; an unknown session or stream is nothing to close', { skip }, async () => {
  const { engine: raw } = engine.inboundPort();
  const bad: unknown[] = [undefined, {}, { session: 1, stream: 0, reason: 'x' }, { session: -1, stream: 1, reason: 'x' }, { session: 1, stream: 1 }];
  for (const arg of bad) assert.throws(() => { raw.closeTunnel(arg as never); }, /closeTunnel/, JSON.stringify(arg));
  for (const arg of [undefined, { session: 1 }, { session: 1, graceful: 'yes' }]) assert.throws(() => { raw.closeSession(arg as never); }, /closeSession/, JSON.stringify(arg));
  raw.closeTunnel({ session: 0xfffffff0, stream: 7, reason: 'nobody' });
  raw.closeSession({ session: 0xfffffff0, graceful: true });
  raw.closeSession({ session: 0xfffffff0, graceful: false });
  // The engine goes on serving.
  assert.equal((await roundTrip(await client.connect(req()), Buffer.from('still here'))).bytes, 'still here'.length);
});
