// SPDX-License-Identifier: Apache-2.0
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { MessageInit, Service as XdsService, Workload as XdsWorkload } from '../xds/proto.ts';
import { bestService } from './service-index.ts';
import { ProxyState, type StateChange } from './store.ts';
import { serviceFromXds, selectableEndpoints, type Service } from './service.ts';
import { workloadFromXds, type Workload } from './workload.ts';
import { ip, pod, xdsService, xdsWorkload } from './testing.ts';

const HOST = 'svc.ns.svc.cluster.local';
const KEY = `ns/${HOST}`;

function wl(init: MessageInit<XdsWorkload>): Workload {
  return workloadFromXds(xdsWorkload(init));
}

function svc(init: MessageInit<XdsService> = {}): Service {
  return serviceFromXds(xdsService({ name: 'svc', namespace: 'ns', hostname: HOST, addresses: [{ address: ip('10.96.0.1') }], ...init }));
}

const backs = { services: { [KEY]: { ports: [{ servicePort: 80, targetPort: 8080 }] } } };

function uids(ws: readonly Workload[]): string[] {
  return ws.map((w) => w.uid);
}

function endpointUids(s: Service | undefined): string[] {
  return [...(s?.endpoints.keys() ?? [])].sort();
}

test('workloads are found by uid, by (network, ip) and by node', () => {
  const st = new ProxyState();
  st.apply((w) => {
    w.upsertWorkload(wl(pod('a', 'ns', '10.0.0.1', { addresses: [ip('10.0.0.1'), ip('fd00::1')] })));
    w.upsertWorkload(wl(pod('b', 'ns', '10.0.0.2', { node: 'node-b', network: 'other' })));
  });
  assert.equal(st.workloads.count, 2);
  assert.equal(st.workloads.byUid('Kubernetes//Pod/ns/a')?.name, 'a');
  assert.equal(st.workloads.byAddress('', '10.0.0.1')?.name, 'a');
  assert.equal(st.workloads.byAddress('', 'fd00::1')?.name, 'a');
  assert.equal(st.workloads.byAddress('', '10.0.0.2'), undefined, 'networks are separate');
  assert.equal(st.workloads.byAddress('other', '10.0.0.2')?.name, 'b');
  assert.deepEqual(uids(st.workloads.onNode('node-a')), ['Kubernetes//Pod/ns/a']);
  assert.deepEqual(uids(st.workloads.onNode('node-b')), ['Kubernetes//Pod/ns/b']);
  assert.deepEqual(st.workloads.onNode(''), []);
});

test('on an address conflict a Pod wins, then HBONE, then the latest', () => {
  const st = new ProxyState();
  const entryHbone = wl({ uid: 'c/networking.istio.io/WorkloadEntry/ns/we', addresses: [ip('10.0.0.5')], tunnelProtocol: 1 });
  const podTcp = wl({ uid: 'c//Pod/ns/p', addresses: [ip('10.0.0.5')] });
  const entryTcp = wl({ uid: 'c/networking.istio.io/WorkloadEntry/ns/we2', addresses: [ip('10.0.0.5')] });
  st.apply((w) => {
    w.upsertWorkload(podTcp);
    w.upsertWorkload(entryHbone);
    w.upsertWorkload(entryTcp);
  });
  assert.equal(st.workloads.byAddress('', '10.0.0.5')?.uid, 'c//Pod/ns/p');
  assert.equal(st.workloads.allByAddress('', '10.0.0.5').length, 3);
  st.apply((w) => w.removeWorkload('c//Pod/ns/p'));
  assert.equal(st.workloads.byAddress('', '10.0.0.5')?.uid, entryHbone.uid, 'HBONE beats TCP');
  st.apply((w) => w.removeWorkload(entryHbone.uid));
  assert.equal(st.workloads.byAddress('', '10.0.0.5')?.uid, entryTcp.uid);
  st.apply((w) => { w.upsertWorkload(wl({ uid: 'c/x/WorkloadEntry/ns/we3', addresses: [ip('10.0.0.5')] })); });
  assert.equal(st.workloads.byAddress('', '10.0.0.5')?.uid, 'c/x/WorkloadEntry/ns/we3', 'equal rank: the latest wins');
  st.apply((w) => {
    w.removeWorkload(entryTcp.uid);
    w.removeWorkload('c/x/WorkloadEntry/ns/we3');
  });
  assert.equal(st.workloads.byAddress('', '10.0.0.5'), undefined);
  assert.deepEqual(st.workloads.allByAddress('', '10.0.0.5'), []);
});

test('host-network workloads are not found by IP', () => {
  const st = new ProxyState();
  st.apply((w) => { w.upsertWorkload(wl(pod('h', 'ns', '192.168.1.10', { networkMode: 1 }))); });
  assert.equal(st.workloads.byAddress('', '192.168.1.10'), undefined);
  assert.equal(st.workloads.byUid('Kubernetes//Pod/ns/h')?.networkMode, 'HostNetwork');
  assert.equal(st.workloads.onNode('node-a').length, 1);
  st.apply((w) => w.removeWorkload('Kubernetes//Pod/ns/h'));
  assert.equal(st.workloads.count, 0);
});

test('endpoints that arrive before their service are staged, then attached', () => {
  const st = new ProxyState();
  st.apply((w) => { w.upsertWorkload(wl(pod('a', 'ns', '10.0.0.1', backs))); });
  assert.deepEqual([...(st.services.stagedServices.get(KEY)?.keys() ?? [])], ['Kubernetes//Pod/ns/a']);
  st.apply((w) => { w.upsertService(svc()); });
  assert.equal(st.services.stagedServices.size, 0);
  const s = st.services.byKey(KEY);
  assert.deepEqual(endpointUids(s), ['Kubernetes//Pod/ns/a']);
  assert.deepEqual(s?.endpoints.get('Kubernetes//Pod/ns/a'), { workloadUid: 'Kubernetes//Pod/ns/a', port: { 80: 8080 }, status: 'Healthy' });
  // A workload arriving after its service attaches directly.
  st.apply((w) => { w.upsertWorkload(wl(pod('b', 'ns', '10.0.0.2', backs))); });
  assert.deepEqual(endpointUids(st.services.byKey(KEY)), ['Kubernetes//Pod/ns/a', 'Kubernetes//Pod/ns/b']);
  assert.equal(st.services.stagedServices.size, 0);
});

test('an incoming workload replaces the old one completely, endpoints and addresses included', () => {
  const st = new ProxyState();
  st.apply((w) => {
    w.upsertService(svc());
    w.upsertService(svc({ name: 'other', hostname: 'other.ns.svc.cluster.local', addresses: [] }));
    w.upsertWorkload(wl(pod('a', 'ns', '10.0.0.1', backs)));
  });
  st.apply((w) => { w.upsertWorkload(wl(pod('a', 'ns', '10.0.0.9', {
    services: { 'ns/other.ns.svc.cluster.local': { ports: [{ servicePort: 81, targetPort: 9091 }] } }, node: 'node-b',
  }))); });
  assert.equal(st.workloads.byAddress('', '10.0.0.1'), undefined);
  assert.equal(st.workloads.byAddress('', '10.0.0.9')?.name, 'a');
  assert.deepEqual(st.workloads.onNode('node-a'), []);
  assert.deepEqual(endpointUids(st.services.byKey(KEY)), []);
  assert.deepEqual(st.services.byKey('ns/other.ns.svc.cluster.local')?.endpoints.get('Kubernetes//Pod/ns/a')?.port, { 81: 9091 });
});

test('removing a workload removes its endpoints from every service and from stage', () => {
  const st = new ProxyState();
  st.apply((w) => {
    w.upsertService(svc());
    w.upsertWorkload(wl(pod('a', 'ns', '10.0.0.1', {
      services: { ...backs.services, 'ns/later.ns.svc.cluster.local': { ports: [] } },
    })));
  });
  assert.equal(st.services.stagedServices.size, 1);
  assert.equal(st.apply((w) => w.removeWorkload('Kubernetes//Pod/ns/a'))?.workloads.removed[0], 'Kubernetes//Pod/ns/a');
  assert.deepEqual(endpointUids(st.services.byKey(KEY)), []);
  assert.equal(st.services.stagedServices.size, 0);
  assert.equal(st.workloads.byAddress('', '10.0.0.1'), undefined);
  assert.equal(st.apply((w) => w.removeWorkload('nope')), undefined, 'removing an unknown uid changes nothing');
});

test('removing a service keeps its endpoints staged; re-adding restores them', () => {
  const st = new ProxyState();
  st.apply((w) => {
    w.upsertService(svc());
    w.upsertWorkload(wl(pod('a', 'ns', '10.0.0.1', backs)));
  });
  st.apply((w) => w.removeService(KEY));
  assert.equal(st.services.byKey(KEY), undefined);
  assert.equal(st.services.byVip('', '10.96.0.1'), undefined);
  assert.deepEqual([...(st.services.stagedServices.get(KEY)?.keys() ?? [])], ['Kubernetes//Pod/ns/a']);
  st.apply((w) => { w.upsertService(svc()); });
  assert.deepEqual(endpointUids(st.services.byKey(KEY)), ['Kubernetes//Pod/ns/a']);
  assert.equal(st.services.stagedServices.size, 0);
});

test('a service update keeps its endpoints and re-indexes its VIPs', () => {
  const st = new ProxyState();
  st.apply((w) => {
    w.upsertService(svc());
    w.upsertWorkload(wl(pod('a', 'ns', '10.0.0.1', backs)));
  });
  st.apply((w) => { w.upsertService(svc({ addresses: [{ address: ip('10.96.0.2') }] })); });
  assert.equal(st.services.byVip('', '10.96.0.1'), undefined);
  assert.equal(st.services.byVip('', '10.96.0.2')?.hostname, HOST);
  assert.deepEqual(endpointUids(st.services.byKey(KEY)), ['Kubernetes//Pod/ns/a']);
  assert.equal(st.services.count, 1);
});

test('unhealthy endpoints are stored with their status and selected only under ALLOW_ALL', () => {
  const st = new ProxyState();
  st.apply((w) => {
    w.upsertService(svc());
    w.upsertWorkload(wl(pod('a', 'ns', '10.0.0.1', backs)));
    w.upsertWorkload(wl(pod('b', 'ns', '10.0.0.2', { ...backs, status: 1 })));
  });
  const strict = st.services.byKey(KEY);
  assert.ok(strict);
  assert.equal(strict.endpoints.get('Kubernetes//Pod/ns/b')?.status, 'Unhealthy');
  assert.deepEqual([...selectableEndpoints(strict)].map((e) => e.workloadUid), ['Kubernetes//Pod/ns/a']);
  // Switching the policy takes effect without the workloads being sent again.
  st.apply((w) => { w.upsertService(svc({ loadBalancing: { routingPreference: [], healthPolicy: 1 } })); });
  const lax = st.services.byKey(KEY);
  assert.ok(lax);
  assert.deepEqual([...selectableEndpoints(lax)].map((e) => e.workloadUid).sort(), ['Kubernetes//Pod/ns/a', 'Kubernetes//Pod/ns/b']);
});

test('VIP lookup: client namespace, then canonical, then first; CIDR VIPs by longest prefix', () => {
  const st = new ProxyState();
  const shared = [{ address: ip('10.96.0.7') }];
  st.apply((w) => {
    w.upsertService(svc({ namespace: 'a', addresses: shared }));
    w.upsertService(svc({ namespace: 'b', addresses: shared, canonical: true }));
    w.upsertService(svc({ namespace: 'c', addresses: shared }));
    w.upsertService(svc({ name: 'wide', hostname: 'wide', addresses: [{ address: ip('10.0.0.0'), length: 8 }] }));
    w.upsertService(svc({ name: 'narrow', hostname: 'narrow', addresses: [{ address: ip('10.1.0.0'), length: 16 }] }));
  });
  assert.equal(st.services.allByVip('', '10.96.0.7').length, 3);
  assert.equal(st.services.byVip('', '10.96.0.7')?.namespace, 'b');
  assert.equal(st.services.byVip('', '10.96.0.7', 'c')?.namespace, 'c');
  assert.equal(st.services.byVip('', '10.1.2.3')?.hostname, 'narrow');
  assert.equal(st.services.byVip('', '10.2.2.3')?.hostname, 'wide');
  assert.equal(st.services.byVip('', '11.0.0.1'), undefined);
  assert.equal(st.services.byVip('other-network', '10.1.2.3'), undefined);
  st.apply((w) => w.removeService('ns/narrow'));
  assert.equal(st.services.byVip('', '10.1.2.3')?.hostname, 'wide');
  st.apply((w) => w.removeService(`b/${HOST}`));
  assert.equal(st.services.byVip('', '10.96.0.7')?.namespace, 'a');
});

test('hostname lookup across namespaces; a canonical service wins ties', () => {
  const st = new ProxyState();
  st.apply((w) => {
    w.upsertService(svc({ namespace: 'a', hostname: 'api.example.com', addresses: [] }));
    w.upsertService(svc({ namespace: 'b', hostname: 'api.example.com', addresses: [], canonical: true }));
  });
  assert.deepEqual(st.services.byHostname('api.example.com').map((s) => s.namespace), ['a', 'b']);
  assert.equal(bestService(st.services.byHostname('api.example.com'), undefined)?.namespace, 'b');
  assert.equal(bestService(st.services.byHostname('api.example.com'), 'a')?.namespace, 'a');
  assert.equal(st.services.byNamespacedHostname('a', 'api.example.com')?.namespace, 'a');
  assert.equal(st.services.byNamespacedHostname('z', 'api.example.com'), undefined);
  assert.deepEqual(st.services.byHostname('nope'), []);
});

test('findAddress prefers a workload over a service VIP', () => {
  const st = new ProxyState();
  st.apply((w) => {
    w.upsertService(svc());
    w.upsertWorkload(wl(pod('a', 'ns', '10.0.0.1')));
  });
  assert.equal(st.findAddress('', '10.0.0.1')?.kind, 'workload');
  const found = st.findAddress('', '10.96.0.1');
  assert.equal(found?.kind === 'service' ? found.service.hostname : undefined, HOST);
  assert.equal(st.findAddress('', '10.9.9.9'), undefined);
});

test('forWorkload lists the known services a workload backs', () => {
  const st = new ProxyState();
  const a = wl(pod('a', 'ns', '10.0.0.1', { services: { ...backs.services, 'ns/missing': { ports: [] } } }));
  st.apply((w) => {
    w.upsertService(svc());
    w.upsertWorkload(a);
  });
  assert.deepEqual(st.services.forWorkload(a).map((s) => s.hostname), [HOST]);
});

test('each batch bumps the generation once and tells listeners what changed', () => {
  const st = new ProxyState();
  const seen: StateChange[] = [];
  const off = st.onChange((c) => seen.push(c));
  st.apply((w) => {
    w.upsertService(svc());
    w.upsertWorkload(wl(pod('a', 'ns', '10.0.0.1', backs)));
    w.upsertWorkload(wl(pod('b', 'ns', '10.0.0.2')));
    w.removeWorkload('Kubernetes//Pod/ns/b');
  });
  assert.equal(st.generation, 1);
  assert.equal(seen.length, 1);
  assert.deepEqual(seen[0], {
    generation: 1,
    workloads: { added: ['Kubernetes//Pod/ns/a'], removed: ['Kubernetes//Pod/ns/b'] },
    services: { added: [KEY], removed: [], endpointsChanged: [] },
    policies: { added: [], removed: [] },
  });
  st.apply((w) => { w.upsertWorkload(wl(pod('c', 'ns', '10.0.0.3', backs))); });
  assert.deepEqual(seen[1]?.services, { added: [], removed: [], endpointsChanged: [KEY] });
  assert.equal(st.apply(() => undefined), undefined, 'an empty batch changes nothing');
  assert.equal(st.generation, 2);
  off();
  st.apply((w) => w.removeWorkload('Kubernetes//Pod/ns/c'));
  assert.equal(seen.length, 2, 'unsubscribed');
  assert.equal(st.generation, 3);
});

test('a throwing listener does not stop the others and the batch stays applied', () => {
  const st = new ProxyState();
  const calls: string[] = [];
  st.onChange(() => { throw new Error('boom'); });
  st.onChange(() => calls.push('second'));
  assert.throws(() => st.apply((w) => { w.upsertWorkload(wl(pod('a', 'ns', '10.0.0.1'))); }), /boom/);
  assert.deepEqual(calls, ['second']);
  assert.equal(st.workloads.count, 1);

  const reported: unknown[] = [];
  const quiet = new ProxyState({ onListenerError: (e) => reported.push(e) });
  quiet.onChange(() => { throw new Error('boom'); });
  assert.ok(quiet.apply((w) => { w.upsertWorkload(wl(pod('a', 'ns', '10.0.0.1'))); }));
  assert.equal(reported.length, 1);
});

test('apply is not reentrant (listeners must not write)', () => {
  const st = new ProxyState();
  assert.throws(() => st.apply(() => st.apply(() => undefined)), /not reentrant/);
  st.apply((w) => { w.upsertWorkload(wl(pod('a', 'ns', '10.0.0.1'))); });
  assert.equal(st.workloads.count, 1, 'usable after the refused call');
});

test('clear empties everything and reports every key removed', () => {
  const st = new ProxyState();
  st.apply((w) => {
    w.upsertService(svc());
    w.upsertWorkload(wl(pod('a', 'ns', '10.0.0.1', { services: { ...backs.services, 'ns/x': { ports: [] } } })));
  });
  const c = st.apply((w) => { w.clear(); });
  assert.deepEqual(c?.workloads.removed, ['Kubernetes//Pod/ns/a']);
  assert.deepEqual(c.services.removed, [KEY]);
  assert.equal(st.workloads.count + st.services.count + st.services.stagedServices.size, 0);
});

test('configDump sorts workloads by uid and services by hostname, and prints staged endpoints', () => {
  const st = new ProxyState();
  st.apply((w) => {
    w.upsertService(svc({ name: 'z', hostname: 'z.ns.svc.cluster.local' }));
    w.upsertService(svc({ name: 'a', hostname: 'a.ns.svc.cluster.local', addresses: [] }));
    w.upsertWorkload(wl(pod('b', 'ns', '10.0.0.2', { services: { 'ns/staged': { ports: [{ servicePort: 1, targetPort: 2 }] } } })));
    w.upsertWorkload(wl(pod('a', 'ns', '10.0.0.1')));
  });
  const d = st.configDump();
  assert.deepEqual(d.workloads.map((w) => w.uid), ['Kubernetes//Pod/ns/a', 'Kubernetes//Pod/ns/b']);
  assert.deepEqual(d.services.map((s) => s.hostname), ['a.ns.svc.cluster.local', 'z.ns.svc.cluster.local']);
  assert.deepEqual(d.policies, []);
  assert.deepEqual(d.stagedServices, {
    'ns/staged': { 'Kubernetes//Pod/ns/b': { workloadUid: 'Kubernetes//Pod/ns/b', port: { 1: 2 }, status: 'Healthy' } },
  });
});

test('what a failing batch wrote before the throw is still published', () => {
  const st = new ProxyState();
  const seen: StateChange[] = [];
  st.onChange((c) => seen.push(c));
  assert.throws(() => st.apply((w) => {
    w.upsertWorkload(wl(pod('a', 'ns', '10.0.0.1')));
    throw new Error('half way');
  }), /half way/);
  assert.equal(st.workloads.count, 1);
  assert.equal(st.generation, 1);
  assert.deepEqual(seen[0]?.workloads.added, ['Kubernetes//Pod/ns/a']);
});

test('listeners cannot write, and a writer cannot be used after its batch', () => {
  const st = new ProxyState({ onListenerError: (e) => { throw e; } });
  st.onChange(() => { st.apply(() => undefined); });
  assert.throws(() => st.apply((w) => { w.upsertWorkload(wl(pod('a', 'ns', '10.0.0.1'))); }), /not reentrant/);
  const quiet = new ProxyState();
  let kept: Parameters<Parameters<ProxyState['apply']>[0]>[0] | undefined;
  quiet.apply((w) => { kept = w; });
  assert.throws(() => kept?.removeWorkload('x'), /after its ProxyState.apply batch/);
});

test('an updated service keeps its place, so "first" does not change hands', () => {
  const st = new ProxyState();
  const shared = [{ address: ip('10.96.0.8') }];
  st.apply((w) => {
    w.upsertService(svc({ namespace: 'a', hostname: 'h', addresses: shared }));
    w.upsertService(svc({ namespace: 'b', hostname: 'h', addresses: shared }));
  });
  st.apply((w) => { w.upsertService(svc({ namespace: 'a', hostname: 'h', addresses: shared, subjectAltNames: ['x'] })); });
  assert.deepEqual(st.services.byHostname('h').map((s) => s.namespace), ['a', 'b']);
  assert.equal(bestService(st.services.byHostname('h'), undefined)?.namespace, 'a');
  assert.equal(st.services.byVip('', '10.96.0.8')?.subjectAltNames[0], 'x');
  // Moving a VIP away drops it from that VIP only.
  st.apply((w) => { w.upsertService(svc({ namespace: 'a', hostname: 'h', addresses: [{ address: ip('10.96.0.9') }] })); });
  assert.deepEqual(st.services.allByVip('', '10.96.0.8').map((s) => s.namespace), ['b']);
  assert.equal(st.services.byVip('', '10.96.0.9')?.namespace, 'a');
});
