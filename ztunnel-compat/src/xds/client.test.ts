// SPDX-License-Identifier: Apache-2.0
// The delta ADS client against the istiod double (real gRPC over TLS):
// snapshot + ACK, partial NACK, removals, readiness, reconnect with
// initial_resource_versions, per-call token, and bad credentials.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { IstiodDouble } from '../../../test/doubles/istiod/istiod-double.ts';
import { AdsClient, nackMessage, type Rejected, type XdsHandler, type XdsResource } from './client.ts';
import { nodeId } from './node.ts';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, TunnelProtocol, unpackResource, type MessageInit, type Node } from './proto.ts';

const TOKEN = 'ztunnel-token';
let istiod: IstiodDouble;
let dir: string;
let tokenFile: string;
const clients: AdsClient[] = [];

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skein-ads-'));
  tokenFile = path.join(dir, 'istio-token');
  fs.writeFileSync(tokenFile, `${TOKEN}\n`);
  istiod = await IstiodDouble.start({
    tokens: { [TOKEN]: { namespace: 'istio-system', serviceAccount: 'ztunnel', podName: 'ztunnel-1', nodeName: 'node-a' } },
  });
  istiod.pushWorkload({ uid: 'Kubernetes//Pod/default/a', name: 'a', namespace: 'default', addresses: [Buffer.from([10, 0, 0, 1])], tunnelProtocol: TunnelProtocol.HBONE });
  istiod.pushWorkload({ uid: 'Kubernetes//Pod/default/b', name: 'b', namespace: 'default', addresses: [Buffer.from([10, 0, 0, 2])] });
  istiod.push(AUTHORIZATION_TYPE_URL, 'default/allow-a', { name: 'allow-a', namespace: 'default', scope: 1, action: 0 });
});

after(async () => {
  for (const c of clients) c.stop();
  await istiod.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Records what it is given; rejects names listed in `reject`. */
class Recorder implements XdsHandler {
  readonly typeUrl: string;
  readonly state = new Map<string, string>();
  readonly calls: { names: string[]; removed: string[] }[] = [];
  reject = new Set<string>();

  constructor(typeUrl: string) {
    this.typeUrl = typeUrl;
  }

  handle(resources: readonly XdsResource[], removed: readonly string[]): Rejected[] {
    this.calls.push({ names: resources.map((r) => r.name), removed: [...removed] });
    const out: Rejected[] = [];
    for (const r of resources) {
      if (this.reject.has(r.name)) { out.push({ name: r.name, reason: 'bad on purpose' }); continue; }
      if (this.typeUrl === ADDRESS_TYPE_URL) unpackResource(ADDRESS_TYPE_URL, r.resource);
      this.state.set(r.name, r.version);
    }
    for (const n of removed) this.state.delete(n);
    return out;
  }
}

const node: MessageInit<Node> = { id: nodeId({ instanceIp: '10.0.0.9', podName: 'ztunnel-1', podNamespace: 'istio-system' }) };

function newClient(addr: Recorder, authz: Recorder, token: string = tokenFile, clusterId = 'Kubernetes'): AdsClient {
  const c = new AdsClient({
    channel: { address: `https://${istiod.address}`, root: { kind: 'pem', pem: istiod.rootPem }, token: token.includes('/') ? { kind: 'file', path: token } : { kind: 'literal', token }, clusterId },
    node,
    handlers: [addr, authz],
    backoff: { initialMs: 10, maxMs: 200 },
  });
  clients.push(c);
  c.start();
  return c;
}

test('snapshot of both types, ACKed, then ready', async () => {
  const addr = new Recorder(ADDRESS_TYPE_URL);
  const authz = new Recorder(AUTHORIZATION_TYPE_URL);
  const since = istiod.events.length;
  const c = newClient(addr, authz);
  await c.whenReady();
  assert.deepEqual([...addr.state.keys()].sort(), ['Kubernetes//Pod/default/a', 'Kubernetes//Pod/default/b']);
  assert.deepEqual([...authz.state.keys()], ['default/allow-a']);
  await istiod.waitForAck({ typeUrl: ADDRESS_TYPE_URL }, { since });
  await istiod.waitForAck({ typeUrl: AUTHORIZATION_TYPE_URL }, { since });
  assert.equal(istiod.lastNode?.id, 'ztunnel~10.0.0.9~ztunnel-1.istio-system~istio-system.svc.cluster.local');
  assert.deepEqual(c.pendingTypes, []);
  c.stop();
});

test('pushes and removals arrive; a bad resource is NACKed by name while good ones apply', async () => {
  const addr = new Recorder(ADDRESS_TYPE_URL);
  const c = newClient(addr, new Recorder(AUTHORIZATION_TYPE_URL));
  await c.whenReady();
  addr.reject.add('Kubernetes//Pod/default/bad');
  const since = istiod.events.length;
  istiod.pushWorkload({ uid: 'Kubernetes//Pod/default/bad', name: 'bad', namespace: 'default' });
  const nack = await istiod.waitForNack({ typeUrl: ADDRESS_TYPE_URL }, { since });
  assert.equal(nack.message, 'Kubernetes//Pod/default/bad: bad on purpose');
  const s1 = istiod.events.length;
  istiod.pushWorkload({ uid: 'Kubernetes//Pod/default/c', name: 'c', namespace: 'default' });
  await istiod.waitForAck({ typeUrl: ADDRESS_TYPE_URL }, { since: s1 });
  assert.ok(addr.state.has('Kubernetes//Pod/default/c'));
  assert.ok(!addr.state.has('Kubernetes//Pod/default/bad'));
  const s2 = istiod.events.length;
  istiod.remove(ADDRESS_TYPE_URL, 'Kubernetes//Pod/default/c');
  await istiod.waitForAck({ typeUrl: ADDRESS_TYPE_URL }, { since: s2 });
  assert.ok(!addr.state.has('Kubernetes//Pod/default/c'));
  assert.deepEqual(addr.calls.at(-1)?.removed, ['Kubernetes//Pod/default/c']);
  istiod.remove(ADDRESS_TYPE_URL, 'Kubernetes//Pod/default/bad');
  c.stop();
});

test('reconnect sends initial_resource_versions: unchanged resources are not re-sent, rejected ones are', async () => {
  const addr = new Recorder(ADDRESS_TYPE_URL);
  const c = newClient(addr, new Recorder(AUTHORIZATION_TYPE_URL));
  addr.reject.add('Kubernetes//Pod/default/b');
  await c.whenReady();
  assert.ok(!addr.state.has('Kubernetes//Pod/default/b'));
  addr.reject.clear();
  const before = addr.calls.length;
  const reconnected = new Promise((r) => c.once('connected', r));
  istiod.killStreams();
  const since = istiod.events.length;
  await reconnected;
  await istiod.waitForAck({ typeUrl: ADDRESS_TYPE_URL }, { since });
  const resent = addr.calls.slice(before).flatMap((x) => x.names);
  assert.deepEqual(resent, ['Kubernetes//Pod/default/b'], 'only the rejected resource came again');
  assert.ok(addr.state.has('Kubernetes//Pod/default/b'));
  c.stop();
});

test('the token file is read on every call', async () => {
  const file = path.join(dir, 'rotating-token');
  fs.writeFileSync(file, 'not-yet-valid');
  const c = newClient(new Recorder(ADDRESS_TYPE_URL), new Recorder(AUTHORIZATION_TYPE_URL), file);
  const err = await new Promise<Error>((r) => c.once('disconnected', r));
  assert.match(String(err), /UNAUTHENTICATED|Unauthenticated/i);
  assert.equal(c.ready, false);
  assert.match(c.lastError ?? '', /UNAUTHENTICATED/);
  fs.writeFileSync(file, TOKEN);
  await c.whenReady();
  c.stop();
});

test('a wrong cluster id is refused and retried with backoff, never ready', async () => {
  const c = newClient(new Recorder(ADDRESS_TYPE_URL), new Recorder(AUTHORIZATION_TYPE_URL), TOKEN, 'other-cluster');
  let failures = 0;
  c.on('disconnected', () => { failures++; });
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(failures >= 3, `retried ${failures} times`);
  assert.equal(c.ready, false);
  c.stop();
});

test('nackMessage joins ztunnel-style', () => {
  assert.equal(nackMessage([{ name: 'a', reason: 'x' }, { name: 'b', reason: 'y' }]), 'a: x; b: y');
});
