// SPDX-License-Identifier: Apache-2.0
// The CA client against the istiod double (real gRPC over TLS on 127.0.0.1):
// its own identity, impersonation of a workload on its node and the refusal
// of one elsewhere, the token re-read per call, the clusterid header, root CA
// file reloads, and connect failures.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { createServer as createTlsServer } from 'node:tls';
import type { PeerCertificate, TlsOptions } from 'node:tls';
import { status } from '@grpc/grpc-js';
import { IstiodDouble } from '../../../test/doubles/istiod/istiod-double.ts';
import { TestCa } from '../../../test/doubles/istiod/test-ca.ts';
import { TunnelProtocol } from '../xds/proto.ts';
import { CaClient, grpcStatus, parseCaAddress, serverIdentityCheck } from './ca-client.ts';
import type { CaClientOptions } from './ca-client.ts';
import { IdentityError, IdentityErrorCode } from './error.ts';

const ZTUNNEL_TOKEN = 'ztunnel-token';
const SLEEP_TOKEN = 'sleep-token';
const SLEEP = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' };
const WEB = { trustDomain: 'cluster.local', namespace: 'other', serviceAccount: 'web' };

let istiod: IstiodDouble;
let tmp: string;
const clients: CaClient[] = [];

before(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'skein-ca-client-'));
  istiod = await IstiodDouble.start({
    tokens: {
      [ZTUNNEL_TOKEN]: { namespace: 'istio-system', serviceAccount: 'ztunnel', podName: 'ztunnel-abc', nodeName: 'node-a' },
      [SLEEP_TOKEN]: { namespace: 'default', serviceAccount: 'sleep', podName: 'sleep-1', nodeName: 'node-a' },
    },
  });
  // sleep runs on this ztunnel's node; web runs elsewhere.
  istiod.pushWorkload({
    uid: 'Kubernetes//Pod/default/sleep-1', name: 'sleep-1', namespace: 'default', serviceAccount: 'sleep',
    node: 'node-a', addresses: [Buffer.from([10, 0, 0, 7])], tunnelProtocol: TunnelProtocol.HBONE,
  });
  istiod.pushWorkload({
    uid: 'Kubernetes//Pod/other/web-1', name: 'web-1', namespace: 'other', serviceAccount: 'web',
    node: 'node-b', addresses: [Buffer.from([10, 0, 1, 9])], tunnelProtocol: TunnelProtocol.HBONE,
  });
});

after(async () => {
  for (const c of clients) c.close();
  await istiod.stop();
  await rm(tmp, { recursive: true, force: true });
});

async function tokenFile(name: string, token: string): Promise<string> {
  const file = path.join(tmp, name);
  await writeFile(file, token);
  return file;
}

function client(opts: Partial<CaClientOptions> & Pick<CaClientOptions, 'token'>): CaClient {
  const c = new CaClient({ address: istiod.address, rootCa: { kind: 'pem', pem: istiod.rootPem }, ...opts });
  clients.push(c);
  return c;
}

async function failure(p: Promise<unknown>): Promise<IdentityError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof IdentityError, `expected an IdentityError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the fetch to fail');
}

test('without impersonation, the caller gets its own identity for SECRET_TTL', async () => {
  const ca = client({ token: { kind: 'file', path: await tokenFile('sleep', SLEEP_TOKEN) }, ttlSeconds: 3600 });
  const cert = await ca.fetch(SLEEP);
  const leaf = new X509Certificate(cert.leafPem);
  const root = new X509Certificate(istiod.rootPem);
  assert.equal(leaf.subjectAltName, 'URI:spiffe://cluster.local/ns/default/sa/sleep');
  assert.ok(leaf.checkIssued(root) && leaf.verify(root.publicKey));
  assert.deepEqual(cert.rootPems, [istiod.rootPem]);
  assert.deepEqual(cert.chainPems, [cert.leafPem]);
  const lifetime = (cert.notAfter.getTime() - Date.now()) / 1000;
  assert.ok(lifetime > 3500 && lifetime <= 3600, `lifetime ${lifetime}`);
  assert.equal(istiod.issued.at(-1)?.impersonated, false);
  assert.equal(istiod.issued.at(-1)?.caller.serviceAccount, 'sleep');
});

test('ztunnel may impersonate a workload on its node', async () => {
  const ca = client({ token: { kind: 'literal', token: ZTUNNEL_TOKEN }, impersonate: true });
  const cert = await ca.fetch(SLEEP);
  assert.equal(new X509Certificate(cert.leafPem).subjectAltName, 'URI:spiffe://cluster.local/ns/default/sa/sleep');
  assert.equal(istiod.issued.at(-1)?.impersonated, true);
  assert.equal(istiod.issued.at(-1)?.caller.serviceAccount, 'ztunnel');
});

test('impersonating a workload on another node is refused with UNAUTHENTICATED', async () => {
  const ca = client({ token: { kind: 'literal', token: ZTUNNEL_TOKEN }, impersonate: true });
  const err = await failure(ca.fetch(WEB));
  assert.equal(err.code, IdentityErrorCode.CA_RPC);
  assert.deepEqual(grpcStatus(err), { code: status.UNAUTHENTICATED, details: 'request impersonation authentication failure' });
  assert.match(err.message, /UNAUTHENTICATED: request impersonation authentication failure/);
  // Without impersonation the same token asks for its own identity, so a
  // per-call override cannot smuggle another identity past the CA.
  const own = await failure(ca.fetch(WEB, { impersonate: false }));
  assert.equal(grpcStatus(own)?.code, status.INVALID_ARGUMENT);
});

test('the token file is read again on every call', async () => {
  const file = await tokenFile('rotating', SLEEP_TOKEN);
  const ca = client({ token: { kind: 'file', path: file } });
  await ca.fetch(SLEEP);
  await writeFile(file, 'stolen\n');
  const err = await failure(ca.fetch(SLEEP));
  assert.deepEqual(grpcStatus(err), { code: status.UNAUTHENTICATED, details: 'unknown bearer token' });
  // A trailing newline is tolerated (trimmed), as `echo token > file` leaves one.
  await writeFile(file, SLEEP_TOKEN + '\n');
  await ca.fetch(SLEEP);
  await writeFile(file, '');
  assert.equal((await failure(ca.fetch(SLEEP))).code, IdentityErrorCode.TOKEN);
  await rm(file);
  assert.equal((await failure(ca.fetch(SLEEP))).code, IdentityErrorCode.TOKEN);
});

test('the clusterid header must name istiod\'s cluster', async () => {
  const wrong = client({ token: { kind: 'literal', token: SLEEP_TOKEN }, clusterId: 'Elsewhere' });
  const err = await failure(wrong.fetch(SLEEP));
  assert.equal(grpcStatus(err)?.code, status.UNAUTHENTICATED);
  assert.match(err.message, /clusterid "Elsewhere", expected "Kubernetes"/);
  const right = client({ token: { kind: 'literal', token: SLEEP_TOKEN }, clusterId: 'Kubernetes', headers: { 'X-Extra': 'yes' } });
  await right.fetch(SLEEP);
});

test('a changed root CA file rebuilds the channel', async () => {
  const rootFile = path.join(tmp, 'root-cert.pem');
  const other = await TestCa.create();
  await writeFile(rootFile, istiod.rootPem);
  const ca = client({ token: { kind: 'literal', token: SLEEP_TOKEN }, rootCa: { kind: 'file', path: rootFile }, connectTimeoutMs: 2000 });
  await ca.fetch(SLEEP);
  await writeFile(rootFile, other.rootPem);
  const err = await failure(ca.fetch(SLEEP));
  assert.equal(err.code, IdentityErrorCode.CA_RPC);
  assert.equal(grpcStatus(err)?.code, status.UNAVAILABLE);
  assert.match(err.message, /unable to verify the first certificate/);
  await writeFile(rootFile, istiod.rootPem);
  await ca.fetch(SLEEP);
});

test('a server that never completes the handshake fails within the connect timeout', async () => {
  const sockets = new Set<Socket>();
  const silent: Server = createServer((s) => { sockets.add(s); });
  await new Promise<void>((resolve) => { silent.listen(0, '127.0.0.1', resolve); });
  const addr = silent.address();
  assert.ok(addr && typeof addr === 'object');
  try {
    const ca = client({ address: `127.0.0.1:${addr.port}`, token: { kind: 'literal', token: SLEEP_TOKEN }, connectTimeoutMs: 200 });
    const started = Date.now();
    const err = await failure(ca.fetch(SLEEP));
    assert.equal(err.code, IdentityErrorCode.CA_CONNECT);
    assert.ok(Date.now() - started < 2000);
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => { silent.close(resolve); });
  }
});

test('a CA that issues a certificate for another identity is refused (SAN_MISMATCH)', async () => {
  istiod.caFault = { kind: 'wrong-identity', identity: 'spiffe://cluster.local/ns/other/sa/web' };
  try {
    const ca = client({ token: { kind: 'literal', token: SLEEP_TOKEN } });
    const err = await failure(ca.fetch(SLEEP));
    assert.equal(err.code, IdentityErrorCode.SAN_MISMATCH);
    assert.match(err.message, /issued a certificate for spiffe:\/\/cluster.local\/ns\/other\/sa\/web, expected spiffe:\/\/cluster.local\/ns\/default\/sa\/sleep/);
  } finally {
    istiod.caFault = undefined;
  }
});

test('a CA that takes the call and never answers fails at the request deadline', async () => {
  istiod.caFault = { kind: 'silent' };
  try {
    const ca = client({ token: { kind: 'literal', token: SLEEP_TOKEN }, requestTimeoutMs: 300 });
    const started = Date.now();
    const err = await failure(ca.fetch(SLEEP));
    assert.equal(err.code, IdentityErrorCode.CA_RPC);
    assert.match(err.message, /DEADLINE_EXCEEDED/);
    assert.ok(Date.now() - started < 3000);
  } finally {
    istiod.caFault = undefined;
  }
});

/**
 * A TLS server with istiod's certificate but other TLS settings: counts the
 * handshakes that complete, then hangs up (it speaks no gRPC).
 */
async function oddServer(tls: TlsOptions): Promise<{ port: number; handshakes: () => number; close: () => Promise<void> }> {
  const { certPem, keyPem } = await istiod.ca.issueServerCert();
  let handshakes = 0;
  const srv = createTlsServer({ cert: certPem, key: keyPem, ALPNProtocols: ['h2'], ...tls }, (s) => {
    handshakes++;
    s.destroy();
  });
  srv.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => { srv.listen(0, '127.0.0.1', resolve); });
  const addr = srv.address();
  assert.ok(addr && typeof addr === 'object');
  return { port: addr.port, handshakes: () => handshakes, close: () => new Promise<void>((resolve) => { srv.close(() => { resolve(); }); }) };
}

test('TLS 1.3 only: a TLS 1.2 server is refused unless tls12 is set', async () => {
  const old = await oddServer({ maxVersion: 'TLSv1.2' });
  try {
    const strict = client({ address: `127.0.0.1:${old.port}`, token: { kind: 'literal', token: SLEEP_TOKEN }, connectTimeoutMs: 2000 });
    const err = await failure(strict.fetch(SLEEP));
    assert.equal(grpcStatus(err)?.code, status.UNAVAILABLE);
    assert.match(err.message, /protocol version|unsupported protocol/i);
    assert.equal(old.handshakes(), 0);
    // With TLS12_ENABLED the handshake completes (the server then hangs up).
    const lax = client({ address: `127.0.0.1:${old.port}`, token: { kind: 'literal', token: SLEEP_TOKEN }, connectTimeoutMs: 2000, tls12: true });
    await failure(lax.fetch(SLEEP));
    assert.notEqual(old.handshakes(), 0, 'the TLS 1.2 handshake completed');
  } finally {
    await old.close();
  }
});

test('COMPLIANCE_POLICY=pqc: the CA connection offers X25519MLKEM768 alone, so a classical server is refused; istiod (OpenSSL defaults) is reached', async () => {
  const classical = await oddServer({ ecdhCurve: 'X25519:P-256' });
  try {
    const strict = client({ address: `127.0.0.1:${classical.port}`, token: { kind: 'literal', token: SLEEP_TOKEN }, connectTimeoutMs: 2000, pqc: true });
    const err = await failure(strict.fetch(SLEEP));
    assert.equal(grpcStatus(err)?.code, status.UNAVAILABLE);
    assert.match(err.message, /handshake failure/i);
    assert.equal(classical.handshakes(), 0);
    const cert = await client({ token: { kind: 'literal', token: SLEEP_TOKEN }, pqc: true }).fetch(SLEEP);
    assert.equal(cert.identity.serviceAccount, 'sleep');
  } finally {
    await classical.close();
  }
});

test('CA addresses: https is assumed, the port defaults to 443, IPv6 keeps its brackets', () => {
  assert.deepEqual(parseCaAddress('istiod.istio-system.svc:15012'), { target: 'istiod.istio-system.svc:15012', host: 'istiod.istio-system.svc', port: 15012 });
  assert.deepEqual(parseCaAddress('https://istiod-rev.istio-system.svc:15012'), { target: 'istiod-rev.istio-system.svc:15012', host: 'istiod-rev.istio-system.svc', port: 15012 });
  assert.deepEqual(parseCaAddress('https://istiod'), { target: 'istiod:443', host: 'istiod', port: 443 });
  assert.deepEqual(parseCaAddress('[::1]:15012'), { target: '[::1]:15012', host: '::1', port: 15012 });
  assert.throws(() => parseCaAddress('http://istiod:15012'), (e: unknown) => e instanceof IdentityError && e.code === IdentityErrorCode.CONFIG);
  assert.throws(() => new CaClient({ address: 'istiod:15012', rootCa: { kind: 'system' }, token: { kind: 'literal', token: 't' }, headers: { 'bad header': 'x' } }),
    (e: unknown) => e instanceof IdentityError && e.code === IdentityErrorCode.CONFIG);
});

test('the server certificate may name either the address host or ALT_CA_HOSTNAME', () => {
  const cert = { subject: {}, subjectaltname: 'DNS:istiod.istio-system.svc, IP Address:127.0.0.1' } as unknown as PeerCertificate;
  assert.equal(serverIdentityCheck(['istiod.example', 'istiod.istio-system.svc'])('ignored', cert), undefined);
  assert.equal(serverIdentityCheck(['127.0.0.1'])('ignored', cert), undefined);
  assert.ok(serverIdentityCheck(['istiod.example'])('ignored', cert) instanceof Error);
});

// Found by the resilience scenario's istiod outage: grpc-js backs a refused
// connection off by itself (1 s, x1.6, up to 120 s) and fails calls at once
// meanwhile, so fetches kept failing for seconds (minutes after a long
// outage) after istiod was back, and certificates expired.
test('istiod back after refused connections: the next fetch connects, not failing on the channel\'s own backoff', { timeout: 30_000 }, async () => {
  const own = await IstiodDouble.start({ tokens: { [SLEEP_TOKEN]: { namespace: 'default', serviceAccount: 'sleep', podName: 'sleep-1', nodeName: 'node-a' } } });
  try {
    const ca = new CaClient({ address: own.address, rootCa: { kind: 'pem', pem: own.rootPem }, token: { kind: 'literal', token: SLEEP_TOKEN } });
    clients.push(ca);
    await ca.fetch(SLEEP);
    await own.stop();
    // Refused for ~3 s: grpc-js's backoff would now run to ~5 s after the stop.
    const downSince = Date.now();
    while (Date.now() - downSince < 3000) {
      await failure(ca.fetch(SLEEP));
      await new Promise((r) => setTimeout(r, 300));
    }
    await own.restart();
    // The channel's next attempt is at most RECONNECT_BACKOFF (1 s) away.
    await new Promise((r) => setTimeout(r, 1300));
    const started = Date.now();
    const cert = await ca.fetch(SLEEP).catch((e: unknown) => { throw new Error(`after ${Date.now() - started} ms: ${String(e)}`); });
    assert.equal(cert.identity.serviceAccount, 'sleep');
    assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
  } finally {
    await own.stop();
  }
});
