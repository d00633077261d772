// SPDX-License-Identifier: Apache-2.0
// HBONE mTLS refusals and wire properties: no client cert, another trust
// domain, a foreign root, an unexpected server identity, TLS 1.2, ALPN
// other than h2, and no SNI — each over a real handshake on 127.0.0.1.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import type { ConnectionOptions, TLSSocket } from 'node:tls';
import { HboneClient } from './client.ts';
import { HboneError, HboneErrorCode } from './error.ts';
import type { HandshakeRejection } from './server.ts';
import { clientOptions, serverContext, spiffeIdentities } from './tls.ts';
import { certs, startServer } from './testing.ts';
import type { Certs, Harness } from './testing.ts';

let c: Certs;
let h: Harness;
const rejections: HandshakeRejection[] = [];
const servernames: (string | false | null)[] = [];
const protocols: (string | null)[] = [];
const ciphers: string[] = [];

before(async () => {
  c = await certs();
  h = await startServer(c.server, {
    onHandshakeReject: (r) => rejections.push(r),
    onSecureConnection: (s: TLSSocket) => {
      servernames.push(s.servername);
      protocols.push(s.getProtocol());
      ciphers.push(s.getCipher().standardName);
    },
  });
});

after(async () => {
  await h.close();
});

/**
 * Dials the server with raw node:tls options. Resolves with the error that
 * ended the connection (if any) and whether any application byte (the
 * server's HTTP/2 SETTINGS) ever arrived.
 */
function dial(opts: ConnectionOptions): Promise<{ error: Error | undefined; gotData: boolean }> {
  return new Promise((resolve) => {
    let error: Error | undefined;
    let gotData = false;
    const s = tlsConnect({ host: '127.0.0.1', port: h.port, ...opts });
    s.on('error', (err) => { error ??= err; });
    s.on('data', () => { gotData = true; });
    s.on('close', () => { resolve({ error, gotData }); });
    // A peer that accepted us would send SETTINGS; give it time, then hang up.
    setTimeout(() => s.destroy(), 1000).unref();
  });
}

async function expectRefused(opts: ConnectionOptions, what: string): Promise<HandshakeRejection> {
  const n = rejections.length;
  const handled = h.requests.length;
  const r = await dial(opts);
  assert.equal(r.gotData, false, `${what}: the server must not speak HTTP/2`);
  await waitFor(() => rejections.length > n);
  assert.equal(h.requests.length, handled);
  const rej = rejections.at(-1);
  assert.ok(rej);
  return rej;
}

test('the accepted handshake is TLS 1.3, an AES-GCM suite, ALPN h2, no SNI', async () => {
  const client = new HboneClient();
  try {
    await assert.rejects(client.connect({ cert: c.client, expected: [c.serverId], upstream: { ip: '127.0.0.1', port: h.port }, authority: 'x' }),
      (err: unknown) => err instanceof HboneError && err.status === 400);
    // The production path: the caller hands over a plain TCP socket.
    await assert.rejects(client.connect({
      cert: c.client, expected: [c.serverId], upstream: { ip: '127.0.0.1', port: h.port }, authority: 'y', poolKey: 'raw',
      createSocket: () => new Socket(),
    }), (err: unknown) => err instanceof HboneError && err.status === 400);
    assert.equal(servernames.length, 2);
    for (const sn of servernames) assert.ok(sn === false || sn === null || sn === '', `SNI must not be sent, got ${String(sn)}`);
    assert.deepEqual(protocols, ['TLSv1.3', 'TLSv1.3']);
    for (const name of ciphers) assert.ok(['TLS_AES_256_GCM_SHA384', 'TLS_AES_128_GCM_SHA256'].includes(name), name);
  } finally {
    await client.close();
  }
});

test('a client without a certificate is refused', async () => {
  const noCert = { ...clientOptions(c.client, [c.serverId]), key: undefined, cert: undefined };
  const rej = await expectRefused(noCert, 'no cert');
  assert.match(String((rej.error as { code?: string }).code) + rej.error.message, /CERTIFICATE|certificate/);
});

test('a client certificate from another trust domain is refused after the handshake', async () => {
  const rej = await expectRefused(clientOptions(c.otherTrustDomain, [c.serverId]), 'other trust domain');
  assert.ok(rej.error instanceof HboneError);
  assert.equal(rej.error.code, HboneErrorCode.IDENTITY);
  assert.match(rej.error.message, /other\.td.*not in trust domain cluster\.local/);
  // And through the client: the connect fails, nothing reaches the handler.
  const client = new HboneClient({ connectTimeoutMs: 3000 });
  try {
    await assert.rejects(client.connect({ cert: c.otherTrustDomain, expected: [c.serverId], upstream: { ip: '127.0.0.1', port: h.port }, authority: '127.0.0.1:1' }),
      (err: unknown) => err instanceof HboneError && err.status === undefined);
    assert.equal(client.sessionCount, 0);
  } finally {
    await client.close();
  }
});

test('a client certificate from a foreign root is refused', async () => {
  // The client trusts the server's root but presents a leaf from another CA.
  const rej = await expectRefused({ ...clientOptions(c.foreignRoot, [c.serverId]), ca: [...c.server.rootPems] }, 'foreign root');
  assert.ok(!(rej.error instanceof HboneError), 'refused by the TLS stack itself');
});

test('a TLS 1.2-only client is refused', async () => {
  const rej = await expectRefused({ ...clientOptions(c.client, [c.serverId], { tls12: true }), maxVersion: 'TLSv1.2' }, 'TLS 1.2');
  assert.match(String((rej.error as { code?: string }).code), /VERSION|PROTOCOL/);
});

test('ALPN other than h2 is refused', async () => {
  await expectRefused({ ...clientOptions(c.client, [c.serverId]), ALPNProtocols: ['http/1.1'] }, 'ALPN http/1.1');
  await expectRefused({ ...clientOptions(c.client, [c.serverId]), ALPNProtocols: [] }, 'no ALPN');
});

test('a server whose identity is not expected is refused before any data is sent', async () => {
  // A bare TLS server with the HBONE server context: it records every byte the client sends after the handshake.
  const tls = serverContext(c.stranger);
  let appBytes = 0;
  let handshakes = 0;
  const srv = createTlsServer(tls.options, (s) => {
    handshakes++;
    s.on('data', (d: Buffer) => { appBytes += d.length; });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => { srv.listen(0, '127.0.0.1', r); });
  const addr = srv.address();
  assert.ok(addr !== null && typeof addr === 'object');
  const client = new HboneClient();
  try {
    await assert.rejects(client.connect({ cert: c.client, expected: [c.serverId], upstream: { ip: '127.0.0.1', port: addr.port }, authority: '127.0.0.1:80' }),
      (err: unknown) => err instanceof HboneError && err.flag === 'TLS_FAILURE' && err.code === HboneErrorCode.IDENTITY
        && /presented spiffe:\/\/cluster\.local\/ns\/evil\/sa\/mallory, expected one of spiffe:\/\/cluster\.local\/ns\/server-ns\/sa\/server-sa/.test(err.message));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(appBytes, 0, 'no HTTP/2 preface or CONNECT may be sent');
    assert.ok(handshakes <= 1);
    assert.equal(client.sessionCount, 0);
  } finally {
    await client.close();
    await new Promise<void>((r) => { srv.close(() => { r(); }); });
  }
});

/** Connects expecting `expected` to a bare TLS server with `cert`; the error, or undefined when it connected. */
async function dialServer(cert: Certs['server'], expected: Certs['serverId'][]): Promise<Error | undefined> {
  const tls = serverContext(cert);
  const open = new Set<TLSSocket>();
  const srv = createTlsServer(tls.options, (s) => { open.add(s); s.on('error', () => undefined); });
  await new Promise<void>((r) => { srv.listen(0, '127.0.0.1', r); });
  const addr = srv.address();
  assert.ok(addr !== null && typeof addr === 'object');
  const client = new HboneClient({ connectTimeoutMs: 1500 });
  try {
    await client.connect({ cert: c.client, expected, upstream: { ip: '127.0.0.1', port: addr.port }, authority: '127.0.0.1:80' });
    return undefined;
  } catch (err) {
    return err as Error;
  } finally {
    await client.close();
    for (const s of open) s.destroy();
    await new Promise<void>((r) => { srv.close(() => { r(); }); });
  }
}

test('a server in another trust domain is refused with what it presented, even an empty trust domain', async () => {
  // ztunnel with a static workload that names no trust domain presents spiffe:///ns/..; say so, not "no SPIFFE identity".
  const err = await dialServer(c.emptyTrustDomain, [c.serverId]);
  assert.ok(err instanceof HboneError && err.code === HboneErrorCode.IDENTITY, String(err));
  assert.match(err.message, /presented spiffe:\/\/\/ns\/server-ns\/sa\/server-sa, expected one of spiffe:\/\/cluster\.local\/ns\/server-ns\/sa\/server-sa/);
  const other = await dialServer(c.otherTrustDomain, [c.clientId]);
  assert.match(String(other), /presented spiffe:\/\/other\.td\/ns\/client-ns\/sa\/client-sa, expected one of spiffe:\/\/cluster\.local\//);
  // Expected with the empty trust domain (Skein's static config, as ztunnel's), it is the identity asked for:
  // the check passes (the bare TLS server then never answers HTTP/2).
  const same = await dialServer(c.emptyTrustDomain, [{ ...c.serverId, trustDomain: '' }]);
  assert.ok(same instanceof HboneError && same.code !== HboneErrorCode.IDENTITY, String(same));
});

test('a server chained to a root the client does not trust is refused', async () => {
  const client = new HboneClient();
  try {
    // The client trusts only the foreign root; the server's chain does not verify.
    await assert.rejects(client.connect({ cert: c.foreignRoot, expected: [c.serverId], upstream: { ip: '127.0.0.1', port: h.port }, authority: '127.0.0.1:80' }),
      (err: unknown) => err instanceof HboneError && err.flag === 'TLS_FAILURE');
  } finally {
    await client.close();
  }
});

test('spiffeIdentities keeps only exact spiffe://td/ns/X/sa/Y URI SANs', async () => {
  assert.deepEqual(spiffeIdentities(new X509Certificate(c.server.leafPem)), [c.serverId]);
  assert.deepEqual(spiffeIdentities(new X509Certificate(c.otherTrustDomain.leafPem)),
    [{ trustDomain: 'other.td', namespace: 'client-ns', serviceAccount: 'client-sa' }]);
  return Promise.resolve();
});

test('updateCertificate rotates the server certificate for new connections', async () => {
  const rotated = await startServer(c.server);
  const client = new HboneClient();
  try {
    rotated.server.updateCertificate(c.stranger);
    await assert.rejects(client.connect({ cert: c.client, expected: [c.serverId], upstream: { ip: '127.0.0.1', port: rotated.port }, authority: `127.0.0.1:${rotated.echo.port}` }),
      (err: unknown) => err instanceof HboneError && err.code === HboneErrorCode.IDENTITY);
    const t = await client.connect({ cert: c.client, expected: [c.stranger.identity], upstream: { ip: '127.0.0.1', port: rotated.port }, authority: `127.0.0.1:${rotated.echo.port}` });
    t.end();
    t.resume();
    await new Promise((r) => t.once('close', r));
  } finally {
    await client.close();
    await rotated.close();
  }
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}
