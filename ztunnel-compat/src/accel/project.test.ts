// SPDX-License-Identifier: Apache-2.0
// The kernel projection: which services the kernel may steer, with exactly
// the candidates and weights decide/ would pick from, and why others stay in
// userspace. State is built from xDS resources, as the daemon builds it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProxyState } from '../state/store.ts';
import { ProxyStateUpdater, type XdsResource } from '../state/updater.ts';
import { ip, pod, policyResource, serviceResource, workloadResource } from '../state/testing.ts';
import type { Service } from '../state/service.ts';
import type { Workload } from '../state/workload.ts';
import type { MessageInit, Service as XdsService, Workload as XdsWorkload } from '../xds/proto.ts';
import { IdTable, project, type EnrolledPod } from './project.ts';

const DB = 'db.ns.svc.cluster.local';
const NODE = 'node-a';

function stateOf(resources: XdsResource[]): ProxyState {
  const state = new ProxyState();
  const rejected = new ProxyStateUpdater(state).addressHandler.handle(resources, []);
  assert.deepEqual(rejected, []);
  return state;
}

const client = (name: string, ns: string, addr: string, extra: MessageInit<XdsWorkload> = {}): XdsResource =>
  workloadResource(pod(name, ns, addr, { node: NODE, ...extra }));
const backend = (name: string, addr: string, extra: MessageInit<XdsWorkload> = {}): XdsResource =>
  workloadResource(pod(name, 'ns', addr, { tunnelProtocol: 0, node: 'node-b', services: { [`ns/${DB}`]: { ports: [{ servicePort: 5432, targetPort: 15432 }] } }, ...extra }));
const db = (extra: MessageInit<XdsService> = {}): XdsResource => serviceResource({
  name: 'db', namespace: 'ns', hostname: DB, addresses: [{ address: ip('10.96.0.20') }], ports: [{ servicePort: 5432, targetPort: 15432 }], ...extra,
});

function enrolled(...names: [string, string][]): EnrolledPod[] {
  return names.map(([name, ns], i) => ({ uid: `Kubernetes//Pod/${ns}/${name}`, info: { name, namespace: ns, serviceAccount: 'sa' }, netnsCookie: BigInt(100 + i) }));
}

function run(state: ProxyState, pods: EnrolledPod[]) {
  return project({
    state, nodeName: NODE, network: '', pods,
    podIds: new IdTable<{ pod: EnrolledPod; workload: Workload | undefined }>(),
    serviceIds: new IdTable<{ service: Service; port: number }>(),
  });
}

test('a service of no-tunnel endpoints goes to the kernel with their target ports and capacities', () => {
  const state = stateOf([client('app', 'ns', '10.0.0.1'), db(), backend('db-0', '10.0.1.1'), backend('db-1', '10.0.1.2', { capacity: { value: 3 } })]);
  const p = run(state, enrolled(['app', 'ns']));
  const s = p.services.get('10.96.0.20:5432');
  assert.ok(s !== undefined, JSON.stringify(p.skipped));
  assert.equal(s.value.passthrough, false);
  assert.deepEqual([...s.value.endpoints].sort((a, b) => a.ip.localeCompare(b.ip)), [{ ip: '10.0.1.1', port: 15432, weight: 1 }, { ip: '10.0.1.2', port: 15432, weight: 3 }]);
  assert.equal(p.pods.get(100n)?.workload?.name, 'app');
});

test('unhealthy endpoints are left out, as decide/ leaves them out', () => {
  const state = stateOf([client('app', 'ns', '10.0.0.1'), db(), backend('db-0', '10.0.1.1'), backend('db-1', '10.0.1.2', { status: 1 })]);
  assert.deepEqual(run(state, enrolled(['app', 'ns'])).services.get('10.96.0.20:5432')?.value.endpoints.map((e) => e.ip), ['10.0.1.1']);
});

test('what stays in userspace, and why', () => {
  const cases: [string, XdsResource[], RegExp][] = [
    ['HBONE endpoints', [db(), backend('db-0', '10.0.1.1', { tunnelProtocol: 1 })], /uses HBONE/],
    ['a service waypoint', [db({ waypoint: { address: { network: '', address: ip('10.0.9.1') }, hboneMtlsPort: 15008 } }), backend('db-0', '10.0.1.1')], /waypoint/],
    ['an endpoint with a workload waypoint', [db(), backend('db-0', '10.0.1.1', { waypoint: { address: { network: '', address: ip('10.0.9.1') }, hboneMtlsPort: 15008 } })], /has a waypoint/],
    ['no endpoints', [db()], /no endpoint/],
  ];
  for (const [name, resources, why] of cases) {
    const p = run(stateOf([client('app', 'ns', '10.0.0.1'), ...resources]), enrolled(['app', 'ns']));
    assert.equal(p.services.size, 0, name);
    assert.match(p.skipped.map((s) => s.reason).join('; '), why, name);
  }
});

test('load balancing mode PASSTHROUGH is let out to the VIP itself', () => {
  const p = run(stateOf([client('app', 'ns', '10.0.0.1'), db({ loadBalancing: { mode: 3 } }), backend('db-0', '10.0.1.1')]), enrolled(['app', 'ns']));
  assert.deepEqual(p.services.get('10.96.0.20:5432')?.value, { svcId: 1, passthrough: true, endpoints: [] });
});

test('when pods on the node would see different candidates (locality), the service stays in userspace', () => {
  const locality = (zone: string) => ({ locality: { region: 'r', zone } });
  const resources = [
    client('a', 'ns', '10.0.0.1', locality('z1')), client('b', 'ns', '10.0.0.2', locality('z2')),
    db({ loadBalancing: { routingPreference: [2], mode: 2 } }), backend('db-0', '10.0.1.1', locality('z1')), backend('db-1', '10.0.1.2', locality('z2')),
  ];
  const both = run(stateOf(resources), enrolled(['a', 'ns'], ['b', 'ns']));
  assert.equal(both.services.size, 0);
  assert.match(both.skipped.map((s) => s.reason).join(), /locality/);
  // With only one of them enrolled there is one view, and the kernel gets its tier.
  const one = run(stateOf(resources), enrolled(['a', 'ns']));
  assert.deepEqual(one.services.get('10.96.0.20:5432')?.value.endpoints.map((e) => e.ip), ['10.0.1.1']);
});

test('a namespace-local service is not projected when pods of other namespaces share the node', () => {
  const resources = [client('a', 'ns', '10.0.0.1'), client('b', 'other', '10.0.0.2'), db({ visibility: 1 }), backend('db-0', '10.0.1.1')];
  assert.equal(run(stateOf(resources), enrolled(['a', 'ns'], ['b', 'other'])).services.size, 0);
});

test('ids are stable across projections and forgotten when their service goes', () => {
  const podIds = new IdTable<{ pod: EnrolledPod; workload: Workload | undefined }>();
  const serviceIds = new IdTable<{ service: Service; port: number }>();
  const pods = enrolled(['app', 'ns']);
  const state = stateOf([client('app', 'ns', '10.0.0.1'), db(), backend('db-0', '10.0.1.1')]);
  const first = project({ state, nodeName: NODE, network: '', pods, podIds, serviceIds });
  const again = project({ state, nodeName: NODE, network: '', pods, podIds, serviceIds });
  const id = first.services.get('10.96.0.20:5432')?.value.svcId ?? 0;
  assert.equal(again.services.get('10.96.0.20:5432')?.value.svcId, id);
  assert.equal(serviceIds.get(id)?.service.hostname, DB);
  project({ state: stateOf([client('app', 'ns', '10.0.0.1')]), nodeName: NODE, network: '', pods, podIds, serviceIds });
  assert.equal(serviceIds.get(id), undefined);
});

test('same-node destinations: enrolled HBONE pods here, with a verdict per source when their policy names only identities', () => {
  const here = (name: string, addr: string, extra: MessageInit<XdsWorkload> = {}): XdsResource => workloadResource(pod(name, 'ns', addr, { node: NODE, serviceAccount: name, ...extra }));
  const wp = { waypoint: { address: { network: '', address: ip('10.0.9.1') }, hboneMtlsPort: 15008 } };
  const state = stateOf([
    here('a', '10.0.0.1'), here('b', '10.0.0.2', { authorizationPolicies: ['ns/deny-a'] }), here('c', '10.0.0.3', wp),
    here('d', '10.0.0.4', { authorizationPolicies: ['ns/port-only'] }),
  ]);
  new ProxyStateUpdater(state).authorizationHandler.handle([
    policyResource({ name: 'deny-a', namespace: 'ns', scope: 2, action: 1, rules: [{ clauses: [{ matches: [{ principals: [{ exact: 'cluster.local/ns/ns/sa/a' }] }] }] }] }),
    policyResource({ name: 'port-only', namespace: 'ns', scope: 2, action: 0, rules: [{ clauses: [{ matches: [{ destinationPorts: [8080] }] }] }] }),
  ], []);
  const pods = enrolled(['a', 'ns'], ['b', 'ns'], ['c', 'ns'], ['d', 'ns']);
  const p = run(state, pods);
  // c has a waypoint and d a port-dependent policy: both stay in userspace.
  assert.deepEqual([...p.locals.keys()].sort(), ['10.0.0.1', '10.0.0.2']);
  const id = (name: string): number => [...p.pods.values()].find((x) => x.workload?.name === name)?.podId ?? -1;
  assert.equal(p.authz.get(`${id('a')}/${id('b')}`)?.allowed, false, 'b denies a');
  assert.equal(p.authz.get(`${id('c')}/${id('b')}`)?.allowed, true);
  assert.equal(p.authz.get(`${id('b')}/${id('a')}`)?.allowed, true, 'a has no policy');
  assert.equal(p.authz.has(`${id('a')}/${id('d')}`), false);
  // SKEIN_SAME_NODE=hbone: nothing same-node goes to the kernel.
  const hbone = project({ state, nodeName: NODE, network: '', pods, podIds: new IdTable(), serviceIds: new IdTable(), sameNode: 'hbone' });
  assert.equal(hbone.locals.size + hbone.authz.size, 0);
});

test('a pod that takes a PROXY application tunnel (a sandwiched waypoint) is never a same-node fast-path destination', () => {
  // The kernel would connect the caller straight to the pod, and the caller's
  // own bytes — a forged PROXY header among them — would be the first the
  // tunnel port reads. Only the userspace path writes Skein's header first.
  const here = (name: string, addr: string, extra: MessageInit<XdsWorkload> = {}): XdsResource => workloadResource(pod(name, 'ns', addr, { node: NODE, serviceAccount: name, ...extra }));
  const state = stateOf([
    here('a', '10.0.0.1'),
    here('gw', '10.0.0.5', { applicationTunnel: { protocol: 1, port: 15088 } }),
    here('gw-any-port', '10.0.0.6', { applicationTunnel: { protocol: 1, port: 0 } }),
  ]);
  const p = run(state, enrolled(['a', 'ns'], ['gw', 'ns'], ['gw-any-port', 'ns']));
  assert.deepEqual([...p.locals.keys()], ['10.0.0.1']);
  const id = (name: string): number => [...p.pods.values()].find((x) => x.workload?.name === name)?.podId ?? -1;
  assert.equal(p.authz.has(`${id('a')}/${id('gw')}`), false);
  assert.equal(p.authz.has(`${id('a')}/${id('gw-any-port')}`), false);
});
