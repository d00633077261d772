// SPDX-License-Identifier: Apache-2.0
// Certificates over real TLS: the HBONE server takes its certificate from a
// source (rotation swaps it for new handshakes while open connections carry
// on; none yet means an on-demand fetch at the handshake; none to be had, or
// only an expired one, means the connection is refused and counted), and the
// client pool never presents an expired certificate and never puts a
// rotated certificate's tunnels on a session made with the old one.
import assert from 'node:assert/strict';
import type { Duplex } from 'node:stream';
import { after, before, test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { Registry } from 'prom-client';
import { WorkloadCertificate } from '../../identity/certificate.ts';
import type { CertificateProvider, CertificateSource } from '../../identity/certificate.ts';
import { createCsr } from '../../identity/csr.ts';
import { identityError, IdentityErrorCode } from '../../identity/error.ts';
import { LocalCa } from '../../identity/local-ca.ts';
import { Priority, SecretManager } from '../../identity/manager.ts';
import type { SecretManagerEvent } from '../../identity/manager.ts';
import { CertificateMetrics } from '../../identity/metrics.ts';
import type { Identity } from '../../identity/spiffe.ts';
import { HboneClient } from './client.ts';
import type { TunnelRequest } from './client.ts';
import { HboneError, HboneErrorCode } from './error.ts';
import type { CertificateRefusal } from './server.ts';
import { echoServer, startServer } from './testing.ts';
import type { Echo, Harness } from './testing.ts';

const serverId: Identity = { trustDomain: 'cluster.local', namespace: 'server-ns', serviceAccount: 'server-sa' };
const clientId: Identity = { trustDomain: 'cluster.local', namespace: 'client-ns', serviceAccount: 'client-sa' };

let ca: LocalCa;
let clientCert: WorkloadCertificate;
let echo: Echo;

before(async () => {
  ca = await LocalCa.generate();
  clientCert = await ca.fetch(clientId);
  echo = await echoServer();
});
after(async () => {
  await echo.close();
});

/** A certificate from `ca` that expires `ttlS` seconds from now (the CA back-dates its start by a minute). */
async function issue(id: Identity, ttlS: number): Promise<WorkloadCertificate> {
  const { csrPem, keyPem } = await createCsr(id);
  return WorkloadCertificate.fromCertChain(id, [await ca.sign(csrPem, ttlS), ca.rootPem], keyPem);
}

/** TLS prints serials in hex; ours are decimal. */
const decimal = (hex: string): string => BigInt(`0x${hex}`).toString(10);

/** A source the test drives: set() is a rotation pushed to subscribers. */
class ManualSource implements CertificateSource {
  cert: WorkloadCertificate | undefined;
  readonly #subs = new Set<(c: WorkloadCertificate) => void>();
  constructor(cert?: WorkloadCertificate) { this.cert = cert; }
  current(): WorkloadCertificate | undefined { return this.cert?.isExpired() === false ? this.cert : undefined; }
  fetch(): Promise<WorkloadCertificate> {
    const c = this.current();
    return c === undefined ? Promise.reject(new Error('the CA is down')) : Promise.resolve(c);
  }
  subscribe(fn: (c: WorkloadCertificate) => void): () => void {
    this.#subs.add(fn);
    return () => { this.#subs.delete(fn); };
  }
  set(cert: WorkloadCertificate): void {
    this.cert = cert;
    for (const fn of this.#subs) fn(cert);
  }
}

function req(cert: WorkloadCertificate, port: number): TunnelRequest {
  return { cert, expected: [serverId], upstream: { ip: '127.0.0.1', port }, authority: `127.0.0.1:${echo.port}`, poolKey: 'k' };
}

/** Writes `text` and reads the echo back, leaving the tunnel open. */
async function roundTrip(t: Duplex, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const onData = (d: Buffer): void => {
      got += d.toString();
      if (got.length >= text.length) {
        t.off('data', onData);
        resolve(got);
      }
    };
    t.on('data', onData);
    t.once('error', reject);
    t.write(text);
  });
}

async function end(t: Duplex): Promise<void> {
  const closed = new Promise((r) => t.once('close', r));
  t.end();
  t.resume();
  await closed;
}

/** The server certificate serials each handshake was served with. */
function servedSerials(): { served: string[]; onSecureConnection: (s: TLSSocket) => void } {
  const served: string[] = [];
  return { served, onSecureConnection: (s) => { const own = s.getX509Certificate();
    served.push(decimal(own?.serialNumber ?? '0')); } };
}

async function withServer(source: CertificateSource | WorkloadCertificate, opts: Parameters<typeof startServer>[1], body: (h: Harness) => Promise<void>): Promise<void> {
  const h = await startServer(source, opts);
  try {
    await body(h);
  } finally {
    await h.server.close(1000);
    await h.close();
  }
}

test('rotation: new handshakes get the new certificate; a connection opened before keeps carrying bytes, even past its expiry', { timeout: 20_000 }, async () => {
  const first = await issue(serverId, 2);
  const second = await issue(serverId, 3600);
  const source = new ManualSource(first);
  const { served, onSecureConnection } = servedSerials();
  await withServer(source, { onSecureConnection }, async (h) => {
    const early = new HboneClient();
    const late = new HboneClient();
    try {
      const old = await early.connect(req(clientCert, h.port));
      assert.equal(await roundTrip(old, 'before'), 'before');
      assert.deepEqual(served, [first.serial]);

      source.set(second);
      assert.equal(h.server.certificate, second, 'pushed: installed without waiting for a connection');
      const fresh = await late.connect(req(clientCert, h.port));
      assert.equal(await roundTrip(fresh, 'new'), 'new');
      assert.deepEqual(served, [first.serial, second.serial], 'the new handshake got the new certificate');

      // The first certificate expires; its connection is not cut.
      await new Promise((r) => setTimeout(r, Math.max(0, first.notAfter.getTime() - Date.now()) + 100));
      assert.ok(first.isExpired());
      assert.equal(await roundTrip(old, 'after expiry'), 'after expiry');
      await Promise.all([end(old), end(fresh)]);
    } finally {
      await Promise.all([early.close(500), late.close(500)]);
    }
  });
});

test('an expired certificate is never served: the connection is refused before TLS, logged and counted', { timeout: 20_000 }, async () => {
  const short = await issue(serverId, 1);
  const source = new ManualSource(short);
  const refusals: CertificateRefusal[] = [];
  const registry = new Registry();
  const metrics = new CertificateMetrics(registry);
  const { served, onSecureConnection } = servedSerials();
  // Wired as pod-proxy wires it.
  await withServer(source, { onSecureConnection, onCertificateRefused: (r) => { refusals.push(r); metrics.refused('inbound', r.reason); } }, async (h) => {
    const client = new HboneClient({ connectTimeoutMs: 3000 });
    try {
      const t = await client.connect(req(clientCert, h.port));
      await end(t);
      await new Promise((r) => setTimeout(r, Math.max(0, short.notAfter.getTime() - Date.now()) + 100));
      const other = new HboneClient({ connectTimeoutMs: 3000 });
      try {
        await assert.rejects(other.connect(req(clientCert, h.port)), (err: unknown) => err instanceof HboneError && err.flag !== 'CONNECT');
      } finally {
        await other.close(100);
      }
      assert.deepEqual(served, [short.serial], 'no handshake with the expired certificate');
      assert.deepEqual(refusals.map((r) => [r.reason, r.peerAddress.ip]), [['expired', '127.0.0.1']]);
      assert.match(await registry.metrics(), /skein_certificate_refusals_total\{direction="inbound",reason="expired"\} 1/);
    } finally {
      await client.close(100);
    }
  });
  // A fixed certificate that has expired is refused the same way.
  const fixedRefusals: CertificateRefusal[] = [];
  await withServer(short, { onCertificateRefused: (r) => { fixedRefusals.push(r); } }, async (h) => {
    const client = new HboneClient({ connectTimeoutMs: 3000 });
    try {
      await assert.rejects(client.connect(req(clientCert, h.port)), HboneError);
      assert.deepEqual(fixedRefusals.map((r) => r.reason), ['expired']);
    } finally {
      await client.close(100);
    }
  });
});

/** A provider backed by the test CA whose answers the test releases; `fail` makes it refuse. */
class GatedProvider implements CertificateProvider {
  calls = 0;
  fail: string | undefined;
  #release: (() => void) | undefined;
  #gate: Promise<void>;
  constructor(open: boolean) {
    this.#gate = open ? Promise.resolve() : new Promise((r) => { this.#release = r; });
  }
  release(): void { this.#release?.(); }
  async fetch(id: Identity): Promise<WorkloadCertificate> {
    this.calls++;
    await this.#gate;
    if (this.fail !== undefined) throw identityError(IdentityErrorCode.CA_RPC, this.fail);
    return issue(id, 3600);
  }
}

test('no certificate yet: the handshake fetches one on demand (RealTime) and then proceeds', { timeout: 20_000 }, async () => {
  const provider = new GatedProvider(false);
  const events: SecretManagerEvent[] = [];
  const sm = new SecretManager({ provider, onEvent: (e) => events.push(e) });
  const { served, onSecureConnection } = servedSerials();
  await withServer(sm.sourceFor(serverId), { onSecureConnection }, async (h) => {
    assert.equal(h.server.certificate, undefined);
    const client = new HboneClient();
    try {
      let done = false;
      const pending = client.connect(req(clientCert, h.port)).finally(() => { done = true; });
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(done, false, 'the handshake waits for the certificate');
      assert.equal(provider.calls, 1);
      assert.deepEqual(events.flatMap((e) => (e.type === 'fetch-start' ? [e.priority] : [])), [Priority.RealTime]);
      provider.release();
      const t = await pending;
      assert.equal(await roundTrip(t, 'hi'), 'hi');
      const cert = sm.find(serverId);
      assert.ok(cert);
      assert.deepEqual(served, [cert.serial]);
      await end(t);
    } finally {
      await client.close(100);
    }
  });
  sm.close();
});

test('no certificate to be had: a refusing CA fails the connection at once, a silent one within the bound; nothing crashes', { timeout: 20_000 }, async () => {
  const provider = new GatedProvider(true);
  provider.fail = 'PERMISSION_DENIED: no';
  const sm = new SecretManager({ provider });
  const refusals: CertificateRefusal[] = [];
  await withServer(sm.sourceFor(serverId), { onCertificateRefused: (r) => { refusals.push(r); } }, async (h) => {
    const client = new HboneClient({ connectTimeoutMs: 3000 });
    try {
      await assert.rejects(client.connect(req(clientCert, h.port)), HboneError);
      assert.deepEqual(refusals.map((r) => r.reason), ['unavailable']);
      assert.match(refusals[0]?.error.message ?? '', /PERMISSION_DENIED/);
    } finally {
      await client.close(100);
    }
  });
  sm.close();

  const silent = new GatedProvider(false);
  const sm2 = new SecretManager({ provider: silent });
  const late: CertificateRefusal[] = [];
  await withServer(sm2.sourceFor(serverId), { certificateWaitMs: 300, onCertificateRefused: (r) => { late.push(r); } }, async (h) => {
    const client = new HboneClient({ connectTimeoutMs: 3000 });
    try {
      const started = Date.now();
      await assert.rejects(client.connect(req(clientCert, h.port)), HboneError);
      assert.ok(Date.now() - started < 2000, 'refused at the bound, not at the client timeout');
      assert.match(late[0]?.error.message ?? '', /no certificate within 300 ms/);
    } finally {
      await client.close(100);
    }
  });
  sm2.close();
  silent.release();
});

test('client pool: a rotated certificate gets a new session; an expired one is never presented; old tunnels carry on', { timeout: 20_000 }, async () => {
  const serverCert = await issue(serverId, 3600);
  const peers: string[] = [];
  await withServer(serverCert, { onSecureConnection: (s) => { peers.push(decimal(s.getPeerCertificate().serialNumber)); } }, async (h) => {
    const client = new HboneClient();
    try {
      const old = await issue(clientId, 2);
      const rotated = await issue(clientId, 3600);
      const t1 = await client.connect(req(old, h.port));
      const t2 = await client.connect(req(old, h.port));
      assert.equal(client.sessionCount, 1, 'one certificate, one session');
      const t3 = await client.connect(req(rotated, h.port));
      assert.equal(client.sessionCount, 2, 'the rotated certificate does not ride on the old session');
      assert.equal(client.sessionsFor('k'), 2);
      assert.deepEqual(peers, [old.serial, rotated.serial], 'the new handshake presented the new certificate');

      await new Promise((r) => setTimeout(r, Math.max(0, old.notAfter.getTime() - Date.now()) + 100));
      await assert.rejects(client.connect(req(old, h.port)), (err: unknown) => err instanceof HboneError && err.code === HboneErrorCode.CERT_EXPIRED);
      assert.equal(peers.length, 2, 'nothing presented the expired certificate');
      assert.deepEqual(await Promise.all([roundTrip(t1, 'a'), roundTrip(t2, 'b'), roundTrip(t3, 'c')]), ['a', 'b', 'c']);
      await Promise.all([end(t1), end(t2), end(t3)]);
    } finally {
      await client.close(500);
    }
  });
});
