// SPDX-License-Identifier: Apache-2.0
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { MessageInit, Workload as XdsWorkload } from '../xds/proto.ts';
import { identityOf, workloadFromXds, workloadToConfigDump, WorkloadError, type Workload } from './workload.ts';
import { ip, xdsWorkload } from './testing.ts';

function convert(init: MessageInit<XdsWorkload>): Workload {
  return workloadFromXds(xdsWorkload(init));
}

function rejects(init: MessageInit<XdsWorkload>, why: RegExp): void {
  assert.throws(() => convert(init), (err: unknown) => {
    assert.ok(err instanceof WorkloadError);
    assert.equal(err.code, 'SKEIN_BAD_WORKLOAD');
    assert.match(err.message, why);
    return true;
  });
}

test('empty fields get ztunnel defaults', () => {
  const w = convert({ uid: 'c//Pod/ns/a', namespace: 'ns' });
  assert.equal(w.trustDomain, 'cluster.local');
  assert.equal(w.serviceAccount, 'default');
  assert.equal(w.clusterId, 'Kubernetes');
  assert.equal(w.capacity, 1);
  assert.equal(w.protocol, 'TCP');
  assert.equal(w.status, 'Healthy');
  assert.equal(w.networkMode, 'Standard');
  assert.equal(w.workloadType, 'deployment');
  assert.equal(w.network, '');
  assert.equal(w.waypoint, undefined);
  assert.equal(w.applicationTunnel, undefined);
  assert.deepEqual(w.workloadIps, []);
  assert.deepEqual(w.services, {});
  assert.deepEqual(w.locality, { region: '', zone: '', subzone: '' });
  assert.ok(Object.isFrozen(w));
});

test('every field converts', () => {
  const w = convert({
    uid: 'c//Pod/ns/a', name: 'a', namespace: 'ns', addresses: [ip('10.0.0.1'), ip('fd00::1')],
    hostname: 'a.example', network: 'net1', tunnelProtocol: 1, trustDomain: 'td', serviceAccount: 'sa',
    waypoint: { hostname: { namespace: 'ns', hostname: 'wp.ns.svc.cluster.local' }, hboneMtlsPort: 15009 },
    networkGateway: { address: { network: 'net2', address: ip('192.168.0.9') } },
    node: 'n1', canonicalName: 'app', canonicalRevision: 'v1', workloadType: 2, workloadName: 'app-deploy',
    nativeTunnel: true, applicationTunnel: { protocol: 1, port: 15088 },
    services: { 'ns/svc.ns.svc.cluster.local': { ports: [{ servicePort: 80, targetPort: 8080, appProtocol: 1 }] } },
    authorizationPolicies: ['ns/p1'], status: 1, clusterId: 'c2',
    locality: { region: 'r', zone: 'z', subzone: 's' }, networkMode: 1, capacity: { value: 7 },
  });
  assert.deepEqual(w, {
    uid: 'c//Pod/ns/a', workloadIps: ['10.0.0.1', 'fd00::1'],
    waypoint: { kind: 'hostname', namespace: 'ns', hostname: 'wp.ns.svc.cluster.local', hboneMtlsPort: 15009 },
    networkGateway: { kind: 'address', network: 'net2', ip: '192.168.0.9', hboneMtlsPort: 15008 },
    protocol: 'HBONE', networkMode: 'HostNetwork', name: 'a', namespace: 'ns', trustDomain: 'td', serviceAccount: 'sa',
    network: 'net1', workloadName: 'app-deploy', workloadType: 'pod', canonicalName: 'app', canonicalRevision: 'v1',
    hostname: 'a.example', node: 'n1', nativeTunnel: true, applicationTunnel: { protocol: 'PROXY', port: 15088 },
    authorizationPolicies: ['ns/p1'], status: 'Unhealthy', clusterId: 'c2',
    locality: { region: 'r', zone: 'z', subzone: 's' },
    services: { 'ns/svc.ns.svc.cluster.local': [{ servicePort: 80, targetPort: 8080, appProtocol: 'HTTP11' }] },
    capacity: 7,
  });
});

test('capacity present with no value is 0 (UInt32Value semantics)', () => {
  assert.equal(convert({ uid: 'u', capacity: {} }).capacity, 0);
});

test('application tunnel port 0 means no override', () => {
  assert.deepEqual(convert({ uid: 'u', applicationTunnel: { protocol: 1 } }).applicationTunnel, { protocol: 'PROXY', port: undefined });
});

test('IPv6 addresses are printed the way Node prints them', () => {
  assert.deepEqual(convert({ uid: 'u', addresses: [ip('2001:db8:0:0:0:0:0:1'), ip('::ffff:1.2.3.4')] }).workloadIps,
    ['2001:db8::1', '::ffff:1.2.3.4']);
});

test('pods of one deployment share repeated parts', () => {
  const common = {
    namespace: 'ns', serviceAccount: 'sa', node: 'n1', locality: { region: 'r', zone: 'z' },
    waypoint: { hostname: { namespace: 'ns', hostname: 'wp' } },
    services: { 'ns/svc': { ports: [{ servicePort: 80, targetPort: 8080 }] } },
  };
  const a = convert({ uid: 'a', ...common });
  const b = convert({ uid: 'b', ...common });
  assert.equal(a.services, b.services);
  assert.equal(a.locality, b.locality);
  assert.equal(a.waypoint, b.waypoint);
  assert.ok(Object.isFrozen(a.services));
  const other = convert({ uid: 'c', ...common, services: { 'ns/svc': { ports: [{ servicePort: 80, targetPort: 9090 }] } } });
  assert.notEqual(other.services, a.services);
});

test('rejects a workload without uid', () => {
  rejects({ name: 'a', namespace: 'ns' }, /no uid/);
});

test('rejects an address that is not 4 or 16 bytes', () => {
  rejects({ uid: 'u', addresses: [Buffer.from([1, 2, 3])] }, /had 3 bytes/);
  rejects({ uid: 'u', addresses: [ip('10.0.0.1'), Buffer.alloc(0)] }, /had 0 bytes/);
});

test('rejects LEGACY_ISTIO_MTLS, as ztunnel does', () => {
  rejects({ uid: 'u', tunnelProtocol: 2 }, /LEGACY_ISTIO_MTLS/);
});

test('rejects a waypoint or network gateway with neither hostname nor address', () => {
  rejects({ uid: 'u', waypoint: { hboneMtlsPort: 15008 } }, /missing address/);
  rejects({ uid: 'u', networkGateway: { hboneMtlsPort: 15008 } }, /missing address/);
});

test('rejects a gateway address of a bad length', () => {
  rejects({ uid: 'u', waypoint: { address: { network: '', address: Buffer.from([1]) } } }, /had 1 bytes/);
});

test('rejects enum values ztunnel does not know', () => {
  rejects({ uid: 'u', tunnelProtocol: 9 }, /tunnel_protocol 9/);
  rejects({ uid: 'u', status: 5 }, /status 5/);
  rejects({ uid: 'u', networkMode: 5 }, /network_mode 5/);
  rejects({ uid: 'u', applicationTunnel: { protocol: 3 } }, /application_tunnel/);
});

test('an unknown workload type falls back to deployment (prost getter), not a rejection', () => {
  assert.equal(convert({ uid: 'u', workloadType: 42 }).workloadType, 'deployment');
});

test('rejects a service key that is not namespace/hostname', () => {
  rejects({ uid: 'u', services: { nohost: { ports: [] } } }, /namespaced hostname: nohost/);
});

test('identityOf gives the SPIFFE parts with defaults applied', () => {
  assert.deepEqual(identityOf(convert({ uid: 'u', namespace: 'ns' })),
    { trustDomain: 'cluster.local', namespace: 'ns', serviceAccount: 'default' });
});

test('config_dump follows ztunnel serde: default fields skipped, services as names', () => {
  const dump = workloadToConfigDump(convert({ uid: 'c//Pod/ns/a', name: 'a', namespace: 'ns', addresses: [ip('10.0.0.1')] }));
  assert.deepEqual(Object.keys(dump), [
    'workloadIps', 'protocol', 'networkMode', 'uid', 'name', 'namespace', 'trustDomain', 'serviceAccount',
    'workloadType', 'status', 'clusterId', 'capacity',
  ]);
  assert.deepEqual(dump, {
    workloadIps: ['10.0.0.1'], protocol: 'TCP', networkMode: 'Standard', uid: 'c//Pod/ns/a', name: 'a', namespace: 'ns',
    trustDomain: 'cluster.local', serviceAccount: 'default', workloadType: 'deployment', status: 'Healthy',
    clusterId: 'Kubernetes', capacity: 1,
  });
});

test('config_dump prints gateways as destination strings and the full set in serde order', () => {
  const dump = workloadToConfigDump(convert({
    uid: 'u', name: 'a', namespace: 'ns', addresses: [ip('fd00::1')], network: 'n',
    waypoint: { hostname: { namespace: 'ns', hostname: 'wp.ns.svc.cluster.local' } },
    networkGateway: { address: { network: 'n2', address: ip('10.9.9.9') }, hboneMtlsPort: 15009 },
    tunnelProtocol: 1, node: 'n1', canonicalName: 'app', canonicalRevision: 'v1', workloadName: 'wl', hostname: 'h',
    nativeTunnel: true, applicationTunnel: { protocol: 1 }, authorizationPolicies: ['ns/p'],
    locality: { zone: 'z' }, services: { 'ns/b': { ports: [] }, 'ns/a': { ports: [] } },
  }));
  assert.deepEqual(JSON.parse(JSON.stringify(dump)), {
    workloadIps: ['fd00::1'],
    waypoint: { destination: 'ns/wp.ns.svc.cluster.local', hboneMtlsPort: 15008 },
    networkGateway: { destination: 'n2/10.9.9.9', hboneMtlsPort: 15009 },
    protocol: 'HBONE', networkMode: 'Standard', uid: 'u', name: 'a', namespace: 'ns',
    trustDomain: 'cluster.local', serviceAccount: 'default', network: 'n', workloadName: 'wl', workloadType: 'deployment',
    canonicalName: 'app', canonicalRevision: 'v1', hostname: 'h', node: 'n1', nativeTunnel: true,
    applicationTunnel: { protocol: 'PROXY', port: null }, authorizationPolicies: ['ns/p'], status: 'Healthy',
    clusterId: 'Kubernetes', locality: { region: '', zone: 'z', subzone: '' }, services: ['ns/a', 'ns/b'], capacity: 1,
  });
  assert.deepEqual(Object.keys(dump), [
    'workloadIps', 'waypoint', 'networkGateway', 'protocol', 'networkMode', 'uid', 'name', 'namespace', 'trustDomain',
    'serviceAccount', 'network', 'workloadName', 'workloadType', 'canonicalName', 'canonicalRevision', 'hostname', 'node',
    'nativeTunnel', 'applicationTunnel', 'authorizationPolicies', 'status', 'clusterId', 'locality', 'services', 'capacity',
  ]);
});
