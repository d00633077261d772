// SPDX-License-Identifier: Apache-2.0
// CRL checks on the JavaScript HBONE path (CRL_PATH): a real client and
// server over TLS 1.3 + HTTP/2 on 127.0.0.1, certificates and CRLs made by
// the openssl CLI, the CRL file on disk and reloaded as it changes.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import { CRL_REJECTIONS } from '../../../../test/compat/ztunnel-facts.ts';
import { CrlFile } from '../../identity/crl-file.ts';
import { makePki } from '../../identity/crl-testing.ts';
import type { Pki } from '../../identity/crl-testing.ts';
import type { WorkloadCertificate } from '../../identity/certificate.ts';
import { crlRevocation } from '../revocation.ts';
import { HboneClient } from './client.ts';
import { HboneError, HboneErrorCode } from './error.ts';
import { roundTrip, startServer } from './testing.ts';
import type { Harness } from './testing.ts';
import type { Revocation } from './tls.ts';

const serverId = { trustDomain: 'cluster.local', namespace: 'server-ns', serviceAccount: 'server-sa' };
const clientId = { trustDomain: 'cluster.local', namespace: 'client-ns', serviceAccount: 'client-sa' };
let pki: Pki;

before(() => { pki = makePki(); });
after(() => { pki.close(); });

/** A CRL file (the intermediate's current CRL) under revocation checks, and its rejection counts. */
function crlSetup(name: string): { file: CrlFile; revocation: Revocation; publish(): void; rejections(reporter: string): Promise<number> } {
  const filePath = path.join(pki.dir, `${name}.pem`);
  const publish = (): void => { writeFileSync(filePath, pki.crl('intermediate')); };
  publish();
  const file = new CrlFile(filePath, { pollMs: 50 });
  const registry = new Registry();
  const revocation = crlRevocation(file, registry);
  return {
    file, revocation, publish,
    rejections: async (reporter) => {
      const m = await registry.getSingleMetric(CRL_REJECTIONS.name)?.get();
      return m?.values.find((v) => v.labels.reporter === reporter)?.value ?? 0;
    },
  };
}

/** Resolves when the tunnel closes, reset or not (a torn-down session errors its streams). */
function closed(tunnel: Duplex): Promise<void> {
  tunnel.on('error', () => undefined);
  return new Promise((resolve) => { tunnel.once('close', resolve); });
}

/** Waits (up to 2 s) for `cond`: sessions leave their sets on their 'close' event, a turn after their streams. */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(cond(), what);
}

/** Abrupt, so a failed assertion is reported rather than waiting on a drain. */
async function shut(h: Harness): Promise<void> {
  h.server.destroy();
  await h.echo.close();
}

function request(cert: WorkloadCertificate, port: number, echoPort: number) {
  return { cert, expected: [serverId], upstream: { ip: '127.0.0.1', port }, authority: `127.0.0.1:${echoPort}` };
}

test('the client refuses a server whose certificate the CRL revokes, counted as reporter=source; others pass', async () => {
  const good = pki.issue(serverId);
  const revoked = pki.issue(serverId);
  pki.revoke('intermediate', revoked.leafPem);
  const crl = crlSetup('source');
  const client = new HboneClient({ revocation: crl.revocation });
  const [hGood, hRevoked] = await Promise.all([startServer(good), startServer(revoked)]);
  try {
    const ok = await client.open(request(pki.issue(clientId), hGood.port, hGood.echo.port));
    assert.equal((await roundTrip(ok.tunnel, Buffer.from('hello'))).bytes, 5);
    await assert.rejects(client.open(request(pki.issue(clientId), hRevoked.port, hRevoked.echo.port)), (err: unknown) =>
      err instanceof HboneError && err.code === HboneErrorCode.REVOKED && err.flag === 'TLS_FAILURE' && /server certificate is revoked/.test(err.message));
    assert.equal(hRevoked.requests.length, 0, 'no CONNECT reached the revoked server');
    assert.equal(await crl.rejections(CRL_REJECTIONS.reporter.outbound), 1);
  } finally {
    client.destroy();
    crl.file.close();
    await Promise.all([shut(hGood), shut(hRevoked)]);
  }
});

test('the server refuses a client whose certificate the CRL revokes, counted as reporter=destination', async () => {
  const revokedClient = pki.issue(clientId);
  pki.revoke('intermediate', revokedClient.leafPem);
  const crl = crlSetup('destination');
  const rejected: Error[] = [];
  const h = await startServer(pki.issue(serverId), { revocation: crl.revocation, onHandshakeReject: (r) => { rejected.push(r.error); } });
  const client = new HboneClient();
  try {
    const ok = await client.open(request(pki.issue(clientId), h.port, h.echo.port));
    assert.equal((await roundTrip(ok.tunnel, Buffer.from('fine'))).bytes, 4);
    await assert.rejects(client.open(request(revokedClient, h.port, h.echo.port)), (err: unknown) => err instanceof HboneError);
    assert.equal(h.requests.length, 1, 'only the good client got a CONNECT through');
    assert.ok(rejected.some((e) => e instanceof HboneError && e.code === HboneErrorCode.REVOKED), `rejections: ${rejected.map((e) => e.message).join('; ')}`);
    assert.equal(await crl.rejections(CRL_REJECTIONS.reporter.inbound), 1);
  } finally {
    client.destroy();
    crl.file.close();
    await shut(h);
  }
});

test('the server refuses, while there are CRLs, a client whose chain it cannot rebuild to a root (Node hands a server the leaf alone; another cluster\'s intermediate is not held here)', async () => {
  const crl = crlSetup('unanchored');
  const rejected: Error[] = [];
  const h = await startServer(pki.issue(serverId), { revocation: crl.revocation, onHandshakeReject: (r) => { rejected.push(r.error); } });
  const clients = [new HboneClient(), new HboneClient()];
  const foreign = pki.issue(clientId, 'other');
  try {
    await assert.rejects(clients[0]?.open(request(foreign, h.port, h.echo.port)) ?? Promise.resolve());
    await until(() => rejected.length === 1, 'the rejection is reported');
    assert.match(rejected[0]?.message ?? '', /client certificate is revoked: no chain of certificates that verify leads from it to a root this node trusts/);
    assert.equal(await crl.rejections(CRL_REJECTIONS.reporter.inbound), 1);
    // With no CRL in the file there is nothing to check, and it gets through.
    writeFileSync(crl.file.path, '');
    crl.file.reload();
    const ok = await (clients[1] as HboneClient).open(request(foreign, h.port, h.echo.port));
    assert.equal((await roundTrip(ok.tunnel, Buffer.from('ok'))).bytes, 2);
  } finally {
    for (const c of clients) c.destroy();
    crl.file.close();
    await shut(h);
  }
});

test('a CRL reload tears down open connections whose chain it now revokes, on both sides, and spares the rest', async () => {
  const serverCert = pki.issue(serverId);
  const keptClient = pki.issue(clientId);
  const goneClient = pki.issue(clientId);
  const crl = crlSetup('reload');
  const h = await startServer(serverCert, { revocation: crl.revocation });
  // Two clients, so one session per client certificate on the server.
  const kept = new HboneClient();
  const gone = new HboneClient();
  const checking = new HboneClient({ revocation: crl.revocation });
  try {
    const a = await kept.open(request(keptClient, h.port, h.echo.port));
    const b = await gone.open(request(goneClient, h.port, h.echo.port));
    assert.equal(h.server.sessionCount, 2);
    // The server revokes goneClient: its session goes, keptClient's stays.
    pki.revoke('intermediate', goneClient.leafPem);
    const bClosed = closed(b.tunnel);
    crl.publish();
    await bClosed;
    await until(() => h.server.sessionCount === 1, 'the revoked client\'s session is gone, the other stays');
    assert.equal(await crl.rejections(CRL_REJECTIONS.reporter.inbound), 1);
    const data = randomBytes(64 * 1024);
    assert.equal((await roundTrip(a.tunnel, data)).bytes, data.length, 'the other client\'s tunnel still carries');

    // Now the client side: a session to the server, then the server's certificate is revoked.
    const c = await checking.open(request(keptClient, h.port, h.echo.port));
    assert.equal(checking.sessionCount, 1);
    pki.revoke('intermediate', serverCert.leafPem);
    const cClosed = closed(c.tunnel);
    crl.publish();
    await cClosed;
    await until(() => checking.sessionCount === 0, 'the session to the revoked server is gone');
    assert.ok(await crl.rejections(CRL_REJECTIONS.reporter.outbound) >= 1);
    await assert.rejects(checking.open(request(keptClient, h.port, h.echo.port)), (err: unknown) => err instanceof HboneError && err.code === HboneErrorCode.REVOKED);
  } finally {
    for (const c of [kept, gone, checking]) c.destroy();
    crl.file.close();
    await shut(h);
  }
});
