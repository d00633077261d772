// SPDX-License-Identifier: Apache-2.0
// CRL checks on the native engine (CRL_PATH; setCrls): its client against
// a JavaScript HboneServer and its 15008 server against a JavaScript
// HboneClient, real TLS 1.3 + HTTP/2 on 127.0.0.1, certificates and CRLs
// made by the openssl CLI. At handshake and when new CRLs come in.
import assert from 'node:assert/strict';
import { connect as netConnect, createServer as createNetServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { after, before, test } from 'node:test';
import { hboneEngineUnavailable } from '@skein/bpf';
import { skipUnless } from '../../../../test/skips.ts';
import { CrlSet } from '../../identity/crl.ts';
import { makePki } from '../../identity/crl-testing.ts';
import type { Pki } from '../../identity/crl-testing.ts';
import { HboneClient } from './client.ts';
import { HboneError } from './error.ts';
import { NativeHboneClient } from './native-client.ts';
import { NativeHboneServer } from './native-server.ts';
import type { HandshakeRejection } from './server.ts';
import { connectUpstream, echoServer, roundTrip, startServer } from './testing.ts';
import type { Echo } from './testing.ts';

// setup builds the engine: its absence fails these tests (test/skips.ts).
const skip = skipUnless({ what: 'the native HBONE engine', missing: hboneEngineUnavailable(), impossible: false });
const serverId = { trustDomain: 'cluster.local', namespace: 'server-ns', serviceAccount: 'server-sa' };
const clientId = { trustDomain: 'cluster.local', namespace: 'client-ns', serviceAccount: 'client-sa' };
let pki: Pki;
let pods: Server;
const accepted: Socket[] = [];

before(async () => {
  if (skip !== false) return;
  pki = makePki();
  // Stands in for a pod's 15001 listener: each accepted socket is a pod socket.
  pods = createNetServer({ allowHalfOpen: true }, (s) => { accepted.push(s); });
  await new Promise<void>((resolve) => { pods.listen(0, '127.0.0.1', resolve); });
});
after(async () => {
  if (skip !== false) return;
  await new Promise<void>((resolve) => { pods.close(() => { resolve(); }); });
  pki.close();
});

const crls = (): readonly Buffer[] => CrlSet.parse(pki.crl('intermediate')).ders;

/** An app socket and the pod-side socket the engine takes. */
async function podPair(): Promise<{ app: Socket; pod: Socket }> {
  const app = netConnect({ host: '127.0.0.1', port: (pods.address() as AddressInfo).port, allowHalfOpen: true });
  await new Promise<void>((resolve, reject) => { app.once('connect', resolve); app.once('error', reject); });
  await until(() => accepted.length > 0, 'the pod side is accepted');
  return { app, pod: accepted.shift() as Socket };
}

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  for (const end = Date.now() + ms; !cond() && Date.now() < end;) await new Promise((r) => setTimeout(r, 10));
  assert.ok(cond(), what);
}

/** One line through the app socket and back. */
async function echoLine(app: Socket, line: string): Promise<string> {
  const got = new Promise<string>((resolve) => { app.once('data', (d: Buffer) => { resolve(d.toString()); }); });
  app.write(line);
  return got;
}

test('the engine\'s client refuses a server the CRL revokes (counted as source), and tears a session down when new CRLs revoke its server', { skip }, async () => {
  const good = pki.issue(serverId);
  const revoked = pki.issue(serverId);
  pki.revoke('intermediate', revoked.leafPem);
  const [hGood, hRevoked] = await Promise.all([startServer(good), startServer(revoked)]);
  const engine = new NativeHboneClient({ workers: 1 });
  const cert = pki.issue(clientId);
  const req = (port: number, echoPort: number) => ({ cert, expected: [serverId], upstream: { ip: '127.0.0.1', port }, authority: `127.0.0.1:${echoPort}` });
  try {
    engine.setCrls(crls());
    const a = await podPair();
    await assert.rejects(engine.open(a.pod, req(hRevoked.port, hRevoked.echo.port)), (err: unknown) =>
      err instanceof HboneError && err.flag === 'TLS_FAILURE' && /server certificate is revoked: certificate [0-9a-f]+ \(the peer\) is revoked by the CRL of .*Plugged Intermediate CA/.test(err.message));
    assert.equal(hRevoked.requests.length, 0, 'no CONNECT reached it');
    assert.equal(engine.stats().crlRejectionsSource, 1);

    const b = await podPair();
    const tunnel = await engine.open(b.pod, req(hGood.port, hGood.echo.port));
    assert.equal(await echoLine(b.app, 'ping\n'), 'ping\n');
    // The good server's certificate is revoked now: its session closes, the tunnel with it.
    pki.revoke('intermediate', good.leafPem);
    engine.setCrls(crls());
    const end = await tunnel.done;
    assert.match(end.error ?? '', /server certificate is revoked/);
    assert.equal(engine.stats().crlRejectionsSource, 2);
    a.app.destroy();
    b.app.destroy();
  } finally {
    engine.close();
    hGood.server.destroy();
    hRevoked.server.destroy();
    await Promise.all([hGood.echo.close(), hRevoked.echo.close()]);
  }
});

test('the engine\'s server refuses a client the CRL revokes (counted as destination), and closes a session when new CRLs revoke its client; [] stops the checks', { skip }, async () => {
  const echo: Echo = await echoServer();
  const engine = new NativeHboneClient({ workers: 1 });
  const rejected: HandshakeRejection[] = [];
  const server = new NativeHboneServer(engine, pki.issue(serverId), { handler: () => connectUpstream(echo.port), onHandshakeReject: (r) => rejected.push(r) });
  const listener = createNetServer((s) => { server.accept(s); });
  await new Promise<void>((resolve) => { listener.listen(0, '127.0.0.1', resolve); });
  const port = (listener.address() as AddressInfo).port;
  const revokedClient = pki.issue(clientId);
  const laterClient = pki.issue(clientId);
  pki.revoke('intermediate', revokedClient.leafPem);
  const clients = [new HboneClient(), new HboneClient(), new HboneClient(), new HboneClient(), new HboneClient()];
  const req = (cert: typeof revokedClient) => ({ cert, expected: [serverId], upstream: { ip: '127.0.0.1', port }, authority: `127.0.0.1:${echo.port}` });
  try {
    engine.setCrls(crls());
    await assert.rejects(clients[0]?.open(req(revokedClient)) ?? Promise.resolve());
    await until(() => rejected.length === 1, 'the handshake rejection is reported');
    assert.match(rejected[0]?.error.message ?? '', /client certificate is revoked/);
    assert.equal(engine.stats().crlRejectionsDestination, 1);

    const open = await (clients[1] as HboneClient).open(req(laterClient));
    const closed = new Promise<void>((resolve) => { open.tunnel.on('error', () => undefined); open.tunnel.once('close', resolve); });
    pki.revoke('intermediate', laterClient.leafPem);
    engine.setCrls(crls());
    await closed;
    assert.equal(engine.stats().crlRejectionsDestination, 2);

    // A client under another cluster's intermediate (not held here) whose intermediate the root's CRL revokes:
    // the engine checks the chain OpenSSL verified, which holds the intermediate the client sent.
    const foreign = pki.issue(clientId, 'other');
    const foreignOk = await (clients[3] as HboneClient).open(req(foreign));
    assert.equal((await roundTrip(foreignOk.tunnel as Duplex, Buffer.from('other'))).bytes, 5);
    pki.revoke('root', foreign.chainPems[1] ?? assert.fail('no intermediate'));
    engine.setCrls([...crls(), ...CrlSet.parse(pki.crl('root')).ders]);
    await assert.rejects((clients[4] as HboneClient).open(req(foreign)));
    await until(() => rejected.some((r) => /\(CA .*other cluster.*\) is revoked by the CRL of .*Plugged Root CA/.test(r.error.message)), 'refused for its intermediate');

    // No CRLs: the revoked client gets through.
    engine.setCrls([]);
    const free = await (clients[2] as HboneClient).open(req(revokedClient));
    assert.equal((await roundTrip(free.tunnel as Duplex, Buffer.from('free'))).bytes, 4);
  } finally {
    for (const c of clients) c.destroy();
    await server.close(0);
    engine.close();
    await new Promise<void>((resolve) => { listener.close(() => { resolve(); }); });
    await echo.close();
  }
});
