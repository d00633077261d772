// SPDX-License-Identifier: Apache-2.0
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, packResource } from '../xds/proto.ts';
import { ProxyState, type StateChange } from './store.ts';
import { nackMessage, ProxyStateUpdater, type XdsResource } from './updater.ts';
import { policyFromXds } from './policy.ts';
import { serviceFromXds } from './service.ts';
import { workloadFromXds } from './workload.ts';
import { ip, pod, policyResource, serviceResource, workloadResource, xdsService, xdsWorkload } from './testing.ts';

const HOST = 'svc.ns.svc.cluster.local';
const KEY = `ns/${HOST}`;
const UID_A = 'Kubernetes//Pod/ns/a';

function setup(): { state: ProxyState; updater: ProxyStateUpdater; changes: StateChange[] } {
  const state = new ProxyState();
  const changes: StateChange[] = [];
  state.onChange((c) => changes.push(c));
  return { state, updater: new ProxyStateUpdater(state), changes };
}

test('the handlers declare their xDS type URLs', () => {
  const { updater } = setup();
  assert.equal(updater.addressHandler.typeUrl, ADDRESS_TYPE_URL);
  assert.equal(updater.authorizationHandler.typeUrl, AUTHORIZATION_TYPE_URL);
});

test('workloads and services from one response are applied as one batch', () => {
  const { state, updater, changes } = setup();
  const rejected = updater.addressHandler.handle([
    workloadResource(pod('a', 'ns', '10.0.0.1', { services: { [KEY]: { ports: [{ servicePort: 80, targetPort: 8080 }] } } })),
    serviceResource({ name: 'svc', namespace: 'ns', hostname: HOST, addresses: [{ address: ip('10.96.0.1') }] }),
  ], []);
  assert.deepEqual(rejected, []);
  assert.equal(state.workloads.byAddress('', '10.0.0.1')?.uid, UID_A);
  assert.deepEqual([...(state.services.byVip('', '10.96.0.1')?.endpoints.keys() ?? [])], [UID_A]);
  assert.equal(changes.length, 1);
  assert.equal(state.generation, 1);
});

test('a partial NACK: good resources are applied, bad ones reported by name with the reason', () => {
  const { state, updater } = setup();
  const garbage: XdsResource = { name: 'garbage', version: '1', resource: { type_url: ADDRESS_TYPE_URL, value: Buffer.from([0xff, 0xff]) } };
  const wrongType: XdsResource = { name: 'wrong', version: '1', resource: packResource(AUTHORIZATION_TYPE_URL, { name: 'p' }) };
  const empty: XdsResource = { name: 'empty', version: '1', resource: packResource(ADDRESS_TYPE_URL, {}) };
  const rejected = updater.addressHandler.handle([
    workloadResource(pod('a', 'ns', '10.0.0.1')),
    workloadResource({ uid: 'legacy', tunnelProtocol: 2 }),
    workloadResource({ uid: 'short', addresses: [Buffer.from([1, 2])] }),
    serviceResource({ name: 'x', namespace: 'ns' }, 'ns/'),
    garbage, wrongType, empty,
    workloadResource(pod('b', 'ns', '10.0.0.2')),
  ], []);
  assert.deepEqual(rejected.map((r) => r.name), ['legacy', 'short', 'ns/', 'garbage', 'wrong', 'empty']);
  assert.match(rejected[0]?.reason ?? '', /LEGACY_ISTIO_MTLS/);
  assert.match(rejected[1]?.reason ?? '', /had 2 bytes/);
  assert.match(rejected[2]?.reason ?? '', /no hostname/);
  assert.match(rejected[4]?.reason ?? '', /expected type\.googleapis\.com\/istio\.workload\.Address/);
  assert.equal(rejected[5]?.reason, 'unknown address type');
  assert.deepEqual([...state.workloads.values()].map((w) => w.name).sort(), ['a', 'b']);
});

test('a rejected update leaves the previous version of that workload in place', () => {
  const { state, updater } = setup();
  updater.addressHandler.handle([workloadResource(pod('a', 'ns', '10.0.0.1'))], []);
  const rejected = updater.addressHandler.handle([workloadResource(pod('a', 'ns', '10.0.0.1', { tunnelProtocol: 2 }))], []);
  assert.equal(rejected.length, 1);
  assert.equal(state.workloads.byUid(UID_A)?.protocol, 'HBONE');
});

test('nackMessage joins "<name>: <reason>" with "; "', () => {
  assert.equal(nackMessage([{ name: 'a', reason: 'x' }, { name: 'ns/b', reason: 'y' }]), 'a: x; ns/b: y');
});

test('removals name a workload uid or a service "namespace/hostname"', () => {
  const { state, updater } = setup();
  updater.addressHandler.handle([
    workloadResource(pod('a', 'ns', '10.0.0.1', { services: { [KEY]: { ports: [] } } })),
    serviceResource({ name: 'svc', namespace: 'ns', hostname: HOST }),
  ], []);
  assert.deepEqual(updater.addressHandler.handle([], [KEY]), []);
  assert.equal(state.services.count, 0);
  assert.equal(state.workloads.count, 1, 'the workload stays');
  assert.deepEqual([...(state.services.stagedServices.get(KEY)?.keys() ?? [])], [UID_A], 'its endpoint is staged');
  assert.deepEqual(updater.addressHandler.handle([], [UID_A, 'unknown/uid/with/slashes', 'ns/not-there']), []);
  assert.equal(state.workloads.count, 0);
  assert.equal(state.services.stagedServices.size, 0);
});

test('a removal that changes nothing does not bump the generation', () => {
  const { state, updater, changes } = setup();
  updater.addressHandler.handle([], ['ns/nothing', 'c//Pod/ns/nothing']);
  assert.equal(state.generation, 0);
  assert.equal(changes.length, 0);
});

test('authorization: policies stored by resource name, bad ones NACKed, removals applied', () => {
  const { state, updater, changes } = setup();
  const rejected = updater.authorizationHandler.handle([
    policyResource({ name: 'allow', namespace: 'ns', scope: 1 }),
    policyResource({ namespace: 'ns' }, 'ns/'),
    policyResource({ name: 'sel', namespace: 'ns', scope: 2, action: 1 }),
  ], []);
  assert.deepEqual(rejected.map((r) => r.name), ['ns/']);
  assert.match(rejected[0]?.reason ?? '', /has no name/);
  assert.equal(state.policies.size, 2);
  assert.equal(state.policies.get('ns/sel')?.action, 'Deny');
  assert.deepEqual(changes.at(-1)?.policies, { added: ['ns/allow', 'ns/sel'], removed: [] });
  assert.deepEqual(updater.authorizationHandler.handle([], ['ns/allow']), []);
  assert.equal(state.policies.get('ns/allow'), undefined);
  assert.deepEqual(changes.at(-1)?.policies, { added: [], removed: ['ns/allow'] });
});

test('replaceAll swaps the whole state for static config', () => {
  const { state, updater, changes } = setup();
  updater.addressHandler.handle([workloadResource(pod('old', 'ns', '10.0.0.9'))], []);
  updater.authorizationHandler.handle([policyResource({ name: 'old', namespace: 'ns' })], []);
  updater.replaceAll({
    workloads: [workloadFromXds(xdsWorkload(pod('a', 'ns', '10.0.0.1', { services: { [KEY]: { ports: [] } } })))],
    services: [serviceFromXds(xdsService({ name: 'svc', namespace: 'ns', hostname: HOST }))],
    policies: [policyFromXds({ name: 'new', namespace: 'ns', rules: [], extensions: [] })],
  });
  assert.deepEqual([...state.workloads.values()].map((w) => w.name), ['a']);
  assert.deepEqual([...(state.services.byKey(KEY)?.endpoints.keys() ?? [])], [UID_A]);
  assert.equal(state.services.stagedServices.size, 0);
  assert.equal(state.policies.size, 1);
  assert.ok(state.policies.get('ns/new'));
  const last = changes.at(-1);
  assert.deepEqual(last?.workloads, { added: [UID_A], removed: ['Kubernetes//Pod/ns/old'] });
  assert.deepEqual(last.policies, { added: ['ns/new'], removed: ['ns/old'] });
  assert.equal(changes.length, 3, 'one batch');
});
