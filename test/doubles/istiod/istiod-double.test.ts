// SPDX-License-Identifier: Apache-2.0
// The istiod double against a raw grpc-js client built from proto.ts's method
// definitions: Delta ADS snapshots, increments, ACK/NACK bookkeeping and
// reconnects; header and node checks; CA signing and impersonation rules.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { after, before, test } from 'node:test';
import { Client, credentials, Metadata, status } from '@grpc/grpc-js';
import type { ClientDuplexStream, ServiceError } from '@grpc/grpc-js';
import {
  ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, createCertificate, deltaAggregatedResources, fromStruct, toStruct,
  TunnelProtocol, unpackResource,
} from '@skein/ztunnel-compat/xds/proto';
import type {
  DeltaDiscoveryRequest, DeltaDiscoveryResponse, IstioCertificateRequest, IstioCertificateResponse, MessageInit,
} from '@skein/ztunnel-compat/xds/proto';
import { IstiodDouble, spiffeId } from './istiod-double.ts';
import { createCsr } from './test-ca.ts';

const ZTUNNEL_TOKEN = 'ztunnel-token';
const SLEEP_TOKEN = 'sleep-token';
const NODE_ID = 'ztunnel~10.0.0.1~ztunnel-abc.istio-system~istio-system.svc.cluster.local';
const SLEEP_ID = spiffeId('cluster.local', 'default', 'sleep');

let istiod: IstiodDouble;
const clients: Client[] = [];

before(async () => {
  istiod = await IstiodDouble.start({
    tokens: {
      [ZTUNNEL_TOKEN]: { namespace: 'istio-system', serviceAccount: 'ztunnel', podName: 'ztunnel-abc', nodeName: 'node-a' },
      [SLEEP_TOKEN]: { namespace: 'default', serviceAccount: 'sleep', podName: 'sleep-1', nodeName: 'node-a' },
    },
  });
  istiod.pushWorkload({
    uid: 'Kubernetes//Pod/default/sleep-1', name: 'sleep-1', namespace: 'default', serviceAccount: 'sleep',
    node: 'node-a', addresses: [Buffer.from([10, 0, 0, 7])], tunnelProtocol: TunnelProtocol.HBONE,
  });
  istiod.pushWorkload({
    uid: 'Kubernetes//Pod/other/web-1', name: 'web-1', namespace: 'other', serviceAccount: 'web', node: 'node-b',
  });
  istiod.pushService({ name: 'sleep', namespace: 'default', hostname: 'sleep.default.svc.cluster.local' });
  istiod.push(AUTHORIZATION_TYPE_URL, 'default/deny-all', { name: 'deny-all', namespace: 'default', action: 1 });
});

after(async () => {
  for (const c of clients) c.close();
  await istiod.stop();
});

function client(): Client {
  // Verify the server certificate by the name ztunnel uses, not just the IP.
  const c = new Client(istiod.address, credentials.createSsl(Buffer.from(istiod.rootPem)), {
    'grpc.ssl_target_name_override': 'istiod.istio-system.svc',
    'grpc.default_authority': 'istiod.istio-system.svc',
  });
  clients.push(c);
  return c;
}

/** `null` leaves the header out. */
function headers(token: string | null, clusterId: string | null = 'Kubernetes'): Metadata {
  const md = new Metadata();
  if (token !== null) md.set('authorization', `Bearer ${token}`);
  if (clusterId !== null) md.set('clusterid', clusterId);
  return md;
}

/** One ADS stream with a queue of responses and the final status. */
class Ads {
  readonly call: ClientDuplexStream<MessageInit<DeltaDiscoveryRequest>, DeltaDiscoveryResponse>;
  readonly ended: Promise<ServiceError | undefined>;
  readonly #queue: DeltaDiscoveryResponse[] = [];
  readonly #waiting: ((r: DeltaDiscoveryResponse) => void)[] = [];

  constructor(md: Metadata) {
    const m = deltaAggregatedResources;
    this.call = client().makeBidiStreamRequest(m.path, m.requestSerialize, m.responseDeserialize, md);
    this.call.on('data', (r: DeltaDiscoveryResponse) => {
      const w = this.#waiting.shift();
      if (w) w(r); else this.#queue.push(r);
    });
    this.ended = new Promise((resolve) => {
      this.call.on('error', (e: ServiceError) => { resolve(e); });
      this.call.on('end', () => { resolve(undefined); });
    });
  }

  send(req: MessageInit<DeltaDiscoveryRequest>): void { this.call.write(req); }

  subscribe(typeUrl: string, initialResourceVersions: Record<string, string> = {}): void {
    this.send({ node: { id: NODE_ID, metadata: toStruct({ NAME: 'ztunnel-abc', NODE_NAME: 'node-a' }) }, typeUrl, initialResourceVersions });
  }

  async next(): Promise<DeltaDiscoveryResponse> {
    const queued = this.#queue.shift();
    if (queued) return queued;
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error('no DeltaDiscoveryResponse within 5 s')); }, 5000);
      this.#waiting.push((r) => { clearTimeout(timer); resolve(r); });
    });
  }

  close(): void { this.call.cancel(); }
}

const names = (r: DeltaDiscoveryResponse): string[] => r.resources.map((x) => x.name ?? '').sort();

async function rejected(ads: Ads): Promise<ServiceError> {
  const err = await ads.ended;
  assert.ok(err, 'the stream should have failed');
  return err;
}

test('a ztunnel gets both snapshots, and its ACKs are recorded against the nonces', async () => {
  const ads = new Ads(headers(ZTUNNEL_TOKEN));
  ads.subscribe(ADDRESS_TYPE_URL);
  ads.subscribe(AUTHORIZATION_TYPE_URL);

  const addresses = await ads.next();
  assert.equal(addresses.typeUrl, ADDRESS_TYPE_URL);
  assert.deepEqual(names(addresses), ['Kubernetes//Pod/default/sleep-1', 'Kubernetes//Pod/other/web-1', 'default/sleep.default.svc.cluster.local']);
  const sleep = addresses.resources.find((r) => r.name === 'Kubernetes//Pod/default/sleep-1');
  assert.ok(sleep?.resource && sleep.version);
  const workload = unpackResource(ADDRESS_TYPE_URL, sleep.resource).workload;
  assert.deepEqual(workload?.addresses, [Buffer.from([10, 0, 0, 7])]);
  assert.equal(workload.tunnelProtocol, TunnelProtocol.HBONE);

  const policies = await ads.next();
  assert.equal(policies.typeUrl, AUTHORIZATION_TYPE_URL);
  assert.deepEqual(names(policies), ['default/deny-all']);
  assert.notEqual(policies.nonce, addresses.nonce);

  ads.send({ typeUrl: ADDRESS_TYPE_URL, responseNonce: addresses.nonce });
  ads.send({ typeUrl: AUTHORIZATION_TYPE_URL, responseNonce: policies.nonce });
  const ack = await istiod.waitForAck({ nonce: addresses.nonce });
  assert.equal(ack.typeUrl, ADDRESS_TYPE_URL);
  assert.equal((await istiod.waitForAck({ nonce: policies.nonce })).typeUrl, AUTHORIZATION_TYPE_URL);
  assert.equal(istiod.nacks.length, 0);
  assert.equal(istiod.connections, 1);
  assert.equal(istiod.lastNode?.id, NODE_ID);
  assert.deepEqual(fromStruct(istiod.lastNode.metadata), { NAME: 'ztunnel-abc', NODE_NAME: 'node-a' });

  // Updates and removals go out incrementally, to subscribers of that type only.
  const [pushNonce] = istiod.pushWorkload({ uid: 'Kubernetes//Pod/default/sleep-2', namespace: 'default', node: 'node-a' });
  const update = await ads.next();
  assert.equal(update.nonce, pushNonce);
  assert.deepEqual(names(update), ['Kubernetes//Pod/default/sleep-2']);
  assert.deepEqual(update.removedResources, []);

  istiod.remove(ADDRESS_TYPE_URL, 'Kubernetes//Pod/default/sleep-2');
  const removal = await ads.next();
  assert.equal(removal.typeUrl, ADDRESS_TYPE_URL);
  assert.deepEqual(removal.resources, []);
  assert.deepEqual(removal.removedResources, ['Kubernetes//Pod/default/sleep-2']);

  // A NACK: the client could not decode what was pushed.
  const [bad] = istiod.pushRaw(ADDRESS_TYPE_URL, [{ name: 'broken', value: Buffer.from([0x0a, 0x7f]) }]);
  const broken = await ads.next();
  assert.equal(broken.nonce, bad);
  assert.throws(() => unpackResource(ADDRESS_TYPE_URL, broken.resources[0]?.resource ?? { type_url: '', value: Buffer.alloc(0) }));
  ads.send({ typeUrl: ADDRESS_TYPE_URL, responseNonce: broken.nonce, errorDetail: { message: 'broken: index out of range' } });
  const nack = await istiod.waitForNack({ nonce: bad });
  assert.equal(nack.message, 'broken: index out of range');
  assert.equal(nack.typeUrl, ADDRESS_TYPE_URL);
  assert.deepEqual(istiod.nacks.map((e) => e.nonce), [bad]);
  istiod.remove(ADDRESS_TYPE_URL, 'broken');
  await ads.next();

  ads.close();
  await istiod.waitForEvent({ kind: 'disconnect' }, { since: 0 });
  assert.equal(istiod.connections, 0);
});

test('calls without a known bearer token or the right clusterid are UNAUTHENTICATED', async () => {
  const cases: [Metadata, RegExp][] = [
    [headers(null), /no "authorization: Bearer" header/],
    [headers('stolen'), /unknown bearer token/],
    [headers(ZTUNNEL_TOKEN, null), /clusterid header missing/],
    [headers(ZTUNNEL_TOKEN, 'cluster-2'), /clusterid "cluster-2", expected "Kubernetes"/],
  ];
  for (const [md, why] of cases) {
    const ads = new Ads(md);
    ads.subscribe(ADDRESS_TYPE_URL);
    const err = await rejected(ads);
    assert.equal(err.code, status.UNAUTHENTICATED);
    assert.match(err.details, why);
  }
  assert.equal(istiod.log.filter((l) => l.includes('UNAUTHENTICATED')).length, 4);
});

test('a node id that is not a ztunnel one is INVALID_ARGUMENT', async () => {
  for (const id of ['sidecar~10.0.0.1~a.b~b.svc.cluster.local', 'ztunnel~10.0.0.1~only-three', '']) {
    const ads = new Ads(headers(ZTUNNEL_TOKEN));
    ads.send({ node: { id }, typeUrl: ADDRESS_TYPE_URL });
    const err = await rejected(ads);
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.ok(istiod.log.some((l) => l.includes('INVALID_ARGUMENT') && l.includes(err.details)), err.details);
  }
});

test('a reconnect with initial_resource_versions gets only changes and removals', async () => {
  const first = new Ads(headers(ZTUNNEL_TOKEN));
  first.subscribe(ADDRESS_TYPE_URL);
  const snapshot = await first.next();
  const known = Object.fromEntries(snapshot.resources.map((r) => [r.name ?? '', r.version ?? '']));
  assert.equal(Object.keys(known).length, 3);
  first.close();

  istiod.remove(ADDRESS_TYPE_URL, 'Kubernetes//Pod/other/web-1');
  istiod.pushWorkload({ uid: 'Kubernetes//Pod/default/sleep-1', name: 'sleep-1', namespace: 'default', serviceAccount: 'sleep', node: 'node-a' });
  istiod.pushWorkload({ uid: 'Kubernetes//Pod/default/new-1', namespace: 'default', node: 'node-c' });

  const second = new Ads(headers(ZTUNNEL_TOKEN));
  second.subscribe(ADDRESS_TYPE_URL, known);
  const resumed = await second.next();
  // The unchanged service is not sent again.
  assert.deepEqual(names(resumed), ['Kubernetes//Pod/default/new-1', 'Kubernetes//Pod/default/sleep-1']);
  assert.deepEqual(resumed.removedResources, ['Kubernetes//Pod/other/web-1']);
  assert.deepEqual(istiod.versions(ADDRESS_TYPE_URL)['default/sleep.default.svc.cluster.local'], known['default/sleep.default.svc.cluster.local']);
  second.close();
});

test('killStreams ends streams with UNAVAILABLE, and restart serves again on the same port', async () => {
  const ads = new Ads(headers(ZTUNNEL_TOKEN));
  ads.subscribe(ADDRESS_TYPE_URL);
  await ads.next();
  istiod.killStreams();
  const err = await rejected(ads);
  assert.equal(err.code, status.UNAVAILABLE);
  assert.equal(istiod.connections, 0);

  const port = istiod.port;
  await istiod.restart();
  assert.equal(istiod.port, port);
  const again = new Ads(headers(ZTUNNEL_TOKEN));
  again.subscribe(AUTHORIZATION_TYPE_URL);
  assert.deepEqual(names(await again.next()), ['default/deny-all']);
  again.close();
});

function sign(token: string, req: MessageInit<IstioCertificateRequest>): Promise<IstioCertificateResponse> {
  const m = createCertificate;
  return new Promise((resolve, reject) => {
    client().makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, req, headers(token), (err, res) => {
      if (err) reject(err);
      else if (res) resolve(res);
      else reject(new Error('no response'));
    });
  });
}

async function signFails(token: string, req: MessageInit<IstioCertificateRequest>): Promise<ServiceError> {
  try {
    await sign(token, req);
  } catch (err) {
    return err as ServiceError;
  }
  assert.fail('CreateCertificate should have failed');
}

test('a CSR for the caller\'s own identity is signed for the requested lifetime, root last', async () => {
  const { csrPem } = await createCsr([SLEEP_ID]);
  const { certChain } = await sign(SLEEP_TOKEN, { csr: csrPem, validityDuration: 3600 });
  assert.equal(certChain.length, 2);
  assert.equal(certChain.at(-1), istiod.rootPem);
  const leaf = new X509Certificate(certChain[0] ?? '');
  const root = new X509Certificate(istiod.rootPem);
  assert.equal(leaf.subjectAltName, `URI:${SLEEP_ID}`);
  assert.ok(leaf.checkIssued(root) && leaf.verify(root.publicKey));
  const lifetime = (Date.parse(leaf.validTo) - Date.now()) / 1000;
  assert.ok(lifetime > 3500 && lifetime <= 3600, `lifetime ${lifetime}`);
  assert.deepEqual(istiod.issued.at(-1)?.identity, SLEEP_ID);
  assert.equal(istiod.issued.at(-1)?.impersonated, false);

  const err = await signFails(SLEEP_TOKEN, { csr: (await createCsr([spiffeId('cluster.local', 'default', 'admin')])).csrPem });
  assert.equal(err.code, status.INVALID_ARGUMENT);
  assert.match(err.details, /is not the identity spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep/);
});

test('a refusing CA answers every CreateCertificate with its code while xDS keeps serving', async () => {
  const req = { csr: (await createCsr([SLEEP_ID])).csrPem, validityDuration: 3600 };
  for (const code of [status.UNAVAILABLE, status.PERMISSION_DENIED]) {
    istiod.caFault = { kind: 'refuse', code };
    try {
      const err = await signFails(SLEEP_TOKEN, req);
      assert.equal(err.code, code);
      const ads = new Ads(headers(ZTUNNEL_TOKEN));
      ads.subscribe(AUTHORIZATION_TYPE_URL);
      assert.ok((await ads.next()).nonce !== '', 'xDS answers during the CA fault');
      ads.close();
    } finally {
      istiod.caFault = undefined;
    }
  }
  assert.equal((await sign(SLEEP_TOKEN, req)).certChain.length, 2, 'signs again once the fault is over');
});

test('ztunnel may impersonate a workload on its own node, and only then', async () => {
  const asSleep = { ImpersonatedIdentity: SLEEP_ID };
  const { certChain } = await sign(ZTUNNEL_TOKEN, { csr: (await createCsr([SLEEP_ID])).csrPem, metadata: toStruct(asSleep) });
  assert.equal(new X509Certificate(certChain[0] ?? '').subjectAltName, `URI:${SLEEP_ID}`);
  assert.equal(istiod.issued.at(-1)?.impersonated, true);

  // new-1 runs on node-c, not on this ztunnel's node-a.
  const elsewhere = spiffeId('cluster.local', 'default', 'default');
  const refused = await signFails(ZTUNNEL_TOKEN, { csr: (await createCsr([elsewhere])).csrPem, metadata: toStruct({ ImpersonatedIdentity: elsewhere }) });
  assert.equal(refused.code, status.UNAUTHENTICATED);
  assert.equal(refused.details, 'request impersonation authentication failure');

  // A workload's own token is not a trusted node account.
  const notNode = await signFails(SLEEP_TOKEN, { csr: (await createCsr([SLEEP_ID])).csrPem, metadata: toStruct(asSleep) });
  assert.equal(notNode.code, status.UNAUTHENTICATED);
  assert.equal(notNode.details, 'request impersonation authentication failure');
});

test('malformed CSRs and bad headers are refused', async () => {
  const garbage = await signFails(SLEEP_TOKEN, { csr: '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n' });
  assert.equal(garbage.code, status.INVALID_ARGUMENT);
  assert.equal((await signFails(SLEEP_TOKEN, {})).code, status.INVALID_ARGUMENT);

  const p384 = await signFails(SLEEP_TOKEN, { csr: (await createCsr([SLEEP_ID], 'P-384')).csrPem });
  assert.equal(p384.code, status.INVALID_ARGUMENT);
  assert.match(p384.details, /P-256, got P-384/);

  const twoSans = await signFails(SLEEP_TOKEN, { csr: (await createCsr([SLEEP_ID, SLEEP_ID + '2'])).csrPem });
  assert.match(twoSans.details, /exactly one URI SAN, got 2/);
  assert.match((await signFails(SLEEP_TOKEN, { csr: (await createCsr([])).csrPem })).details, /exactly one URI SAN, got 0/);

  assert.equal((await signFails('stolen', { csr: (await createCsr([SLEEP_ID])).csrPem })).code, status.UNAUTHENTICATED);
  assert.ok(istiod.log.some((l) => l.startsWith('CreateCertificate: UNAUTHENTICATED: unknown bearer token')));
});
