// SPDX-License-Identifier: Apache-2.0
// COMPLIANCE_POLICY=pqc on HBONE (identity/key-exchange.ts): both engines,
// both sides, offer and accept X25519MLKEM768 alone. Real handshakes on
// 127.0.0.1; the classical peers are Node's OpenSSL held to X25519 and
// P-256, and Debian's openssl s_client held to the same groups.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect, createServer as createNetServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { after, before, test } from 'node:test';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import type { ConnectionOptions } from 'node:tls';
import { hboneEngineUnavailable } from '@skein/bpf';
import { skipUnless } from '../../../../test/skips.ts';
import { PQC_GROUP } from '../../identity/key-exchange.ts';
import { HboneClient } from './client.ts';
import { HboneError } from './error.ts';
import { NativeHboneClient } from './native-client.ts';
import { NativeHboneServer } from './native-server.ts';
import type { HandshakeRejection } from './server.ts';
import { certs, connectUpstream, echoServer, roundTrip, startServer } from './testing.ts';
import type { Certs, Echo } from './testing.ts';
import { clientOptions, serverContext } from './tls.ts';

const skipNative = skipUnless({ what: 'the native HBONE engine', missing: hboneEngineUnavailable(), impossible: false });
const CLASSICAL = 'X25519:P-256';
let c: Certs;
let pods: Server;
const accepted: Socket[] = [];

before(async () => {
  c = await certs();
  // Stands in for a pod's 15001 listener: each accepted socket is a pod socket.
  pods = createNetServer({ allowHalfOpen: true }, (s) => { accepted.push(s); });
  await new Promise<void>((resolve) => { pods.listen(0, '127.0.0.1', resolve); });
});
after(async () => {
  await new Promise<void>((resolve) => { pods.close(() => { resolve(); }); });
});

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  for (const end = Date.now() + ms; !cond() && Date.now() < end;) await new Promise((r) => setTimeout(r, 10));
  assert.ok(cond(), what);
}

/** A raw TLS dial: the group negotiated, or the error that ended it. */
function dial(port: number, opts: ConnectionOptions): Promise<{ group?: string; error?: Error }> {
  return new Promise((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', port, ...opts }, () => {
      const info: unknown = s.getEphemeralKeyInfo();
      const name = (info as { name?: unknown } | null)?.name;
      s.destroy();
      resolve(typeof name === 'string' ? { group: name } : {});
    });
    s.once('error', (error: Error) => { s.destroy(); resolve({ error }); });
    setTimeout(() => { s.destroy(); resolve({ error: new Error('no handshake in 3 s') }); }, 3000).unref();
  });
}

/**
 * A classical-only HBONE-looking TLS server (no ML-KEM): counts the
 * handshakes that complete, then hangs up.
 */
async function classicalServer(): Promise<{ port: number; handshakes: () => number; close: () => Promise<void> }> {
  let n = 0;
  const srv = createTlsServer({ ...serverContext(c.server).options, ecdhCurve: CLASSICAL }, (s) => { n++; s.destroy(); });
  srv.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => { srv.listen(0, '127.0.0.1', resolve); });
  return {
    port: (srv.address() as AddressInfo).port,
    handshakes: () => n,
    close: () => new Promise<void>((resolve) => { srv.close(() => { resolve(); }); }),
  };
}

/** Debian's openssl s_client (OpenSSL 3.0: no ML-KEM) against `port`, with the client certificate; its output. */
async function sClient(port: number): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'skein-pqc-'));
  try {
    writeFileSync(join(dir, 'cert.pem'), c.client.chainPems.join(''));
    writeFileSync(join(dir, 'key.pem'), c.client.keyPem);
    return await new Promise<string>((resolve) => {
      // Held to classical groups, so it is a classical peer whatever this openssl's version.
      const child = execFile('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_3', '-groups', 'X25519:P-256', '-alpn', 'h2', '-brief',
        '-cert', join(dir, 'cert.pem'), '-key', join(dir, 'key.pem')], { timeout: 5000 }, (_err, stdout, stderr) => {
        resolve(stdout + stderr);
      });
      child.stdin?.end();
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function podPair(): Promise<{ app: Socket; pod: Socket }> {
  const app = netConnect({ host: '127.0.0.1', port: (pods.address() as AddressInfo).port, allowHalfOpen: true });
  await new Promise<void>((resolve, reject) => { app.once('connect', resolve); app.once('error', reject); });
  await until(() => accepted.length > 0, 'the pod side is accepted');
  return { app, pod: accepted.shift() as Socket };
}

test('JavaScript server under pqc: X25519MLKEM768 only; a classical client (Node, and OpenSSL 3.0 s_client) is refused at the handshake', async () => {
  const rejected: HandshakeRejection[] = [];
  const h = await startServer(c.server, { pqc: true, onHandshakeReject: (r) => rejected.push(r) });
  const client = new HboneClient({ pqc: true });
  try {
    const ok = await dial(h.port, clientOptions(c.client, [c.serverId], { pqc: true }));
    assert.equal(ok.group, PQC_GROUP);
    // Node's default groups offer it first: a default client agrees on it.
    assert.equal((await dial(h.port, clientOptions(c.client, [c.serverId]))).group, PQC_GROUP);
    const classical = await dial(h.port, { ...clientOptions(c.client, [c.serverId]), ecdhCurve: CLASSICAL });
    assert.match(String((classical.error as { code?: string } | undefined)?.code), /HANDSHAKE_FAILURE/);
    await until(() => rejected.some((r) => /no suitable key share/i.test(r.error.message)), 'the server reports the refusal');
    const s = await sClient(h.port);
    assert.match(s, /handshake failure/i);
    assert.doesNotMatch(s, /Protocol version: TLSv1\.3/);
    // HBONE itself through it.
    const t = await client.connect({ cert: c.client, expected: [c.serverId], upstream: { ip: '127.0.0.1', port: h.port }, authority: `127.0.0.1:${h.echo.port}` });
    assert.equal((await roundTrip(t, Buffer.from('pqc'))).bytes, 3);
  } finally {
    await client.close();
    await h.close();
  }
});

test('JavaScript client under pqc refuses a classical server; without the policy it completes the handshake', async () => {
  const srv = await classicalServer();
  const strict = new HboneClient({ pqc: true, connectTimeoutMs: 3000 });
  const lax = new HboneClient({ connectTimeoutMs: 3000 });
  const req = { cert: c.client, expected: [c.serverId], upstream: { ip: '127.0.0.1', port: srv.port }, authority: '127.0.0.1:1' };
  try {
    await assert.rejects(strict.connect(req), (err: unknown) => err instanceof HboneError && err.flag === 'TLS_FAILURE' && /handshake failure/i.test(err.message));
    assert.equal(srv.handshakes(), 0);
    await assert.rejects(lax.connect(req)); // the server hangs up after its handshake
    await until(() => srv.handshakes() === 1, 'the classical handshake completed');
  } finally {
    await strict.close();
    await lax.close();
    await srv.close();
  }
});

test('native engine under pqc: its client refuses a classical server and reaches a pqc one; its server refuses a classical client', { skip: skipNative }, async () => {
  assert.throws(() => new NativeHboneClient({ workers: 1, groups: 'X25519MLKEM999' }), /does not take the groups 'X25519MLKEM999'/);
  const engine = new NativeHboneClient({ workers: 1, groups: PQC_GROUP });
  const classical = await classicalServer();
  const pqcServer = await startServer(c.server, { pqc: true });
  const echo: Echo = await echoServer();
  const rejected: HandshakeRejection[] = [];
  const server = new NativeHboneServer(engine, c.server, { handler: () => connectUpstream(echo.port), onHandshakeReject: (r) => rejected.push(r) });
  const listener = createNetServer((s) => { server.accept(s); });
  await new Promise<void>((resolve) => { listener.listen(0, '127.0.0.1', resolve); });
  const port = (listener.address() as AddressInfo).port;
  const pairs: Socket[] = [];
  try {
    // Outbound: a classical server is refused before any CONNECT; a pqc one carries bytes.
    const a = await podPair();
    pairs.push(a.app);
    await assert.rejects(engine.open(a.pod, { cert: c.client, expected: [c.serverId], upstream: { ip: '127.0.0.1', port: classical.port }, authority: '127.0.0.1:1' }),
      (err: unknown) => err instanceof HboneError && err.flag === 'TLS_FAILURE');
    assert.equal(classical.handshakes(), 0);
    const b = await podPair();
    pairs.push(b.app);
    await engine.open(b.pod, { cert: c.client, expected: [c.serverId], upstream: { ip: '127.0.0.1', port: pqcServer.port }, authority: `127.0.0.1:${pqcServer.echo.port}` });
    const got = new Promise<string>((resolve) => { b.app.once('data', (d: Buffer) => { resolve(d.toString()); }); });
    b.app.write('over ml-kem\n');
    assert.equal(await got, 'over ml-kem\n');

    // Inbound (15008 on the engine): the hybrid group only.
    assert.equal((await dial(port, clientOptions(c.client, [c.serverId], { pqc: true }))).group, PQC_GROUP);
    const refused = await dial(port, { ...clientOptions(c.client, [c.serverId]), ecdhCurve: CLASSICAL });
    assert.match(String((refused.error as { code?: string } | undefined)?.code), /HANDSHAKE_FAILURE/, 'a classical client is refused at the handshake');
    await until(() => rejected.some((r) => /no suitable key share/i.test(r.error.message)), 'the engine reports the refusal');
    assert.match(await sClient(port), /handshake failure/i);
    const client = new HboneClient({ pqc: true });
    try {
      const t: Duplex = await client.connect({ cert: c.client, expected: [c.serverId], upstream: { ip: '127.0.0.1', port }, authority: `127.0.0.1:${echo.port}` });
      assert.equal((await roundTrip(t, Buffer.from('inbound'))).bytes, 7);
    } finally {
      await client.close();
    }
  } finally {
    for (const s of pairs) s.destroy();
    await server.close(0);
    engine.close();
    await new Promise<void>((resolve) => { listener.close(() => { resolve(); }); });
    await Promise.all([echo.close(), classical.close(), pqcServer.close()]);
  }
});
