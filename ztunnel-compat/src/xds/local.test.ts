// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProxyState } from '../state/store.ts';
import { ProxyStateUpdater } from '../state/updater.ts';
import { STATIC_WORKLOAD_DEFAULTS } from '../state/workload.ts';
import { applyLocalConfig, ipBytes, LocalConfigError, parseLocalConfig } from './local.ts';
import { codecs, type Address } from './proto.ts';

function defined<T>(x: T | undefined): T {
  assert.ok(x !== undefined);
  return x;
}

const sample = {
  workloads: [
    { uid: 'cluster1//Pod/default/local', name: 'local', namespace: 'default', serviceAccount: 'default', workloadIps: ['127.0.0.1'], protocol: 'HBONE', node: 'local',
      services: { 'default/example.com': { 80: 8080 } }, authorizationPolicies: ['default/allow'] },
    { name: 'tcp', namespace: 'default', workloadIps: ['127.0.0.2', '::1'], protocol: 'TCP', waypoint: { destination: '/127.0.0.10' }, services: {} },
  ],
  services: [
    { name: 'example', namespace: 'default', hostname: 'example.com', vips: ['/127.10.0.1'], ports: { 80: 8080 }, loadBalancer: { routingPreferences: ['Node', 'Zone'], mode: 'Failover' },
      weightedWaypoints: [{ waypoint: { destination: 'default/wp-a.default.svc.cluster.local' }, weight: 90 }, { waypoint: { destination: '/127.0.0.11' }, weight: 0 }] },
  ],
  policies: [
    { name: 'allow', namespace: 'default', scope: 'WorkloadSelector', action: 'Allow',
      rules: [[[{ principals: [{ Exact: 'cluster.local/ns/default/sa/sleep' }], sourceIps: ['10.0.0.0/8'], destinationPorts: [8080] }]]] },
    { name: 'strict', namespace: 'istio-system', scope: 'Global', action: 'Deny', rules: [[[{ notPrincipals: [{ Presence: null }] }]]] },
  ],
};

test('ztunnel-format YAML becomes the xDS messages istiod would send', () => {
  const c = parseLocalConfig(sample);
  assert.deepEqual(c.addresses.map((a) => a.name), ['cluster1//Pod/default/local', 'Kubernetes//Pod/default/tcp', 'default/example.com']);
  // Round-trip through the real protobuf encoding to prove the shapes are valid.
  const decode = (i: number): Address => codecs.Address.decode(codecs.Address.encode(defined(c.addresses[i]).message));
  const w = defined(decode(0).workload);
  assert.equal(w.tunnelProtocol, 1);
  assert.deepEqual([...defined(w.addresses[0])], [127, 0, 0, 1]);
  assert.deepEqual(defined(w.services['default/example.com']).ports, [{ servicePort: 80, targetPort: 8080 }]);
  const tcp = defined(decode(1).workload);
  assert.equal(defined(tcp.addresses[1]).length, 16);
  assert.deepEqual([...defined(tcp.waypoint?.address?.address)], [127, 0, 0, 10]);
  const svc = defined(decode(2).service);
  assert.deepEqual(svc.loadBalancing, { routingPreference: [4, 2], mode: 2 });
  assert.deepEqual(svc.weightedWaypoints.map((x) => [x.destination?.hostname?.hostname, x.weight]), [['wp-a.default.svc.cluster.local', 90], [undefined, undefined]]);
  assert.deepEqual([...defined(svc.weightedWaypoints[1]?.destination?.address?.address)], [127, 0, 0, 11]);
  const pol = codecs.Authorization.decode(codecs.Authorization.encode(defined(c.policies[0]).message));
  assert.equal(pol.scope, 2);
  const m = defined(pol.rules[0]?.clauses[0]?.matches[0]);
  assert.deepEqual(m.principals, [{ exact: 'cluster.local/ns/default/sa/sleep' }]);
  assert.deepEqual(m.sourceIps.map((x) => [[...defined(x.address)], x.length]), [[[10, 0, 0, 0], 8]]);
  assert.deepEqual(c.policies.map((p) => p.name), ['default/allow', 'istio-system/strict']);
});

test('unknown fields and bad values are refused with their location', () => {
  const bad: [unknown, RegExp][] = [
    [{ workloads: [{ namespace: 'a', workloadIps: ['1.2.3.4'], services: {}, colour: 'red' }] }, /workloads\[0\]: unknown field 'colour'/],
    [{ workloads: [{ namespace: 'a', workloadIps: [], services: {} }] }, /workloads\[0\].workloadIps: required/],
    [{ workloads: [{ namespace: 'a', workloadIps: ['300.1.1.1'], services: {} }] }, /not an IP address/],
    [{ workloads: [{ namespace: 'a', workloadIps: ['1.1.1.1'], protocol: 'QUIC', services: {} }] }, /protocol: "QUIC" must be one of TCP, HBONE/],
    [{ services: [{ name: 's', namespace: 'n' }] }, /services\[0\].hostname: required/],
    [{ policies: [{ name: 'p', rules: [[[{ principals: [{ Regex: 'x' }] }]]] }] }, /unknown string match 'Regex'/],
    [{ extra: [] }, /static config: unknown field 'extra'/],
    [{ services: [{ name: 's', namespace: 'n', hostname: 'h', weightedWaypoints: [{ waypoint: { destination: 'n/w' }, weight: -1 }] }] }, /weightedWaypoints\[0\].weight: expected an integer/],
    [[1], /expected a mapping/],
    // ztunnel's LocalWorkload has no default for services (src/xds.rs): a file without them is not a ztunnel file.
    [{ workloads: [{ namespace: 'a', workloadIps: ['1.1.1.1'] }] }, /workloads\[0\].services: required/],
  ];
  for (const [doc, re] of bad) assert.throws(() => parseLocalConfig(doc), (e: Error) => e instanceof LocalConfigError && re.test(e.message), re.source);
});

test('IPv6 text becomes 16 bytes', () => {
  assert.deepEqual([...ipBytes('::1', 'x')], [...Array<number>(15).fill(0), 1]);
  assert.deepEqual([...ipBytes('fd00:244:1::a', 'x')], [0xfd, 0, 2, 0x44, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a]);
  assert.deepEqual([...ipBytes('::ffff:1.2.3.4', 'x')].slice(10), [0xff, 0xff, 1, 2, 3, 4]);
});

const handlers = (u: ProxyStateUpdater) => ({ address: u.addressHandler, authorization: u.authorizationHandler });

test("a workload with no trustDomain keeps an empty one, as ztunnel's static config does (xDS still means cluster.local)", () => {
  const state = new ProxyState();
  const cfg = parseLocalConfig({ workloads: [{ name: 'w', namespace: 'default', serviceAccount: 'sa', workloadIps: ['10.0.0.1'], services: {} }] });
  applyLocalConfig(cfg, handlers(new ProxyStateUpdater(state, { workloadDefaults: STATIC_WORKLOAD_DEFAULTS })));
  assert.equal(state.workloads.byAddress('', '10.0.0.1')?.trustDomain, '');
  const viaXds = new ProxyState();
  applyLocalConfig(cfg, handlers(new ProxyStateUpdater(viaXds)));
  assert.equal(viaXds.workloads.byAddress('', '10.0.0.1')?.trustDomain, 'cluster.local');
});
