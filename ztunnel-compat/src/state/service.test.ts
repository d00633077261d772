// SPDX-License-Identifier: Apache-2.0
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { MessageInit, Service as XdsService } from '../xds/proto.ts';
import {
  endpointFor, endpointSelectable, endpointsOf, selectableEndpoints, serviceFromXds, serviceToConfigDump, ServiceError,
  type Service,
} from './service.ts';
import { ip, xdsService } from './testing.ts';

const base = { name: 'svc', namespace: 'ns', hostname: 'svc.ns.svc.cluster.local' };

function convert(init: MessageInit<XdsService>): Service {
  return serviceFromXds(xdsService(init));
}

function rejects(init: MessageInit<XdsService>, why: RegExp): void {
  assert.throws(() => convert(init), (err: unknown) => {
    assert.ok(err instanceof ServiceError);
    assert.equal(err.code, 'SKEIN_BAD_SERVICE');
    assert.match(err.message, why);
    return true;
  });
}

test('a minimal service has no VIPs, no load balancer, automatic IP families, public visibility', () => {
  const s = convert(base);
  assert.deepEqual(s.vips, []);
  assert.deepEqual(s.cidrVips, []);
  assert.equal(s.loadBalancer, undefined);
  assert.equal(s.ipFamilies, undefined);
  assert.equal(s.canonical, false);
  assert.equal(s.visibility, 'Public');
  assert.equal(s.endpoints.size, 0);
  assert.ok(Object.isFrozen(s));
});

test('every field converts', () => {
  const s = convert({
    ...base,
    addresses: [{ network: 'n', address: ip('10.96.0.1') }, { address: ip('fd00::10'), length: 128 }],
    ports: [{ servicePort: 80, targetPort: 8080 }, { servicePort: 443 }],
    subjectAltNames: ['spiffe://td/ns/ns/sa/x'],
    waypoint: { hostname: { namespace: 'ns', hostname: 'wp' }, hboneMtlsPort: 15008 },
    weightedWaypoints: [{ destination: { address: { address: ip('10.0.0.9') } }, weight: 3 }],
    loadBalancing: { routingPreference: [6, 1, 2], mode: 2, healthPolicy: 1 },
    ipFamilies: 3, canonical: true, visibility: 1,
  });
  assert.deepEqual(s.vips, [{ network: 'n', ip: '10.96.0.1' }, { network: '', ip: 'fd00::10' }]);
  assert.deepEqual([...s.ports], [[80, 8080], [443, 0]]);
  assert.deepEqual(s.subjectAltNames, ['spiffe://td/ns/ns/sa/x']);
  assert.deepEqual(s.waypoint, { kind: 'hostname', namespace: 'ns', hostname: 'wp', hboneMtlsPort: 15008 });
  assert.deepEqual(s.weightedWaypoints, [{ destination: { kind: 'address', network: '', ip: '10.0.0.9', hboneMtlsPort: 15008 }, weight: 3 }]);
  assert.deepEqual(s.loadBalancer, { routingPreferences: ['Network', 'Region', 'Zone'], mode: 'Failover', healthPolicy: 'AllowAll' });
  assert.equal(s.ipFamilies, 'Dual');
  assert.equal(s.canonical, true);
  assert.equal(s.visibility, 'Namespace');
});

test('an address with a prefix length short of 32/128 is a CIDR VIP', () => {
  const s = convert({ ...base, addresses: [{ network: 'n', address: ip('10.1.0.0'), length: 16 }, { address: ip('10.2.0.1'), length: 32 }] });
  assert.deepEqual(s.cidrVips, [{ network: 'n', ip: '10.1.0.0', prefixLen: 16 }]);
  assert.deepEqual(s.vips, [{ network: '', ip: '10.2.0.1' }]);
});

test('rejects a VIP that is not 4 or 16 bytes', () => {
  rejects({ ...base, addresses: [{ address: Buffer.from([10, 0, 0]) }] }, /had 3 bytes/);
  rejects({ ...base, addresses: [{ network: 'n' }] }, /had 0 bytes/);
});

test('rejects a prefix longer than the address', () => {
  rejects({ ...base, addresses: [{ address: ip('10.0.0.0'), length: 33 }] }, /invalid cidr/);
});

test('rejects a service without namespace or hostname', () => {
  rejects({ name: 'svc', hostname: 'h' }, /no namespace/);
  rejects({ name: 'svc', namespace: 'ns' }, /no hostname/);
});

test('rejects a waypoint or weighted waypoint without a destination', () => {
  rejects({ ...base, waypoint: { hboneMtlsPort: 15008 } }, /missing address/);
  rejects({ ...base, weightedWaypoints: [{ weight: 1 }] }, /weighted waypoint has no destination/);
  rejects({ ...base, weightedWaypoints: [{ destination: {}, weight: 1 }] }, /missing address/);
});

test('rejects an unspecified routing scope and unknown enums', () => {
  rejects({ ...base, loadBalancing: { routingPreference: [0] } }, /invalid target/);
  rejects({ ...base, loadBalancing: { routingPreference: [], mode: 9 } }, /mode 9/);
  rejects({ ...base, loadBalancing: { routingPreference: [], healthPolicy: 9 } }, /health_policy 9/);
  rejects({ ...base, ipFamilies: 9 }, /ip_families 9/);
  rejects({ ...base, visibility: 9 }, /visibility 9/);
});

test('unhealthy endpoints are selectable only under ALLOW_ALL', () => {
  const strict = convert(base);
  const lax = convert({ ...base, loadBalancing: { routingPreference: [], healthPolicy: 1 } });
  const healthy = endpointFor('a', [], 'Healthy');
  const sick = endpointFor('b', [], 'Unhealthy');
  assert.equal(endpointSelectable(strict, healthy), true);
  assert.equal(endpointSelectable(strict, sick), false);
  assert.equal(endpointSelectable(lax, sick), true);
  endpointsOf(strict).set('a', healthy).set('b', sick);
  assert.deepEqual([...selectableEndpoints(strict)].map((e) => e.workloadUid), ['a']);
});

test('endpoints with the same port list share one port map', () => {
  const ports = Object.freeze([{ servicePort: 80, targetPort: 8080, appProtocol: 'UNKNOWN' as const }]);
  const a = endpointFor('a', ports, 'Healthy');
  const b = endpointFor('b', ports, 'Healthy');
  assert.deepEqual(a.port, { 80: 8080 });
  assert.equal(a.port, b.port);
});

test('config_dump follows ztunnel serde; unselectable endpoints are left out', () => {
  const s = convert({
    ...base,
    addresses: [{ network: 'n', address: ip('10.96.0.1') }, { address: ip('10.1.0.0'), length: 16 }],
    ports: [{ servicePort: 80, targetPort: 8080 }],
  });
  endpointsOf(s)
    .set('z', endpointFor('z', [{ servicePort: 80, targetPort: 9090, appProtocol: 'UNKNOWN' }], 'Healthy'))
    .set('a', endpointFor('a', [], 'Healthy'))
    .set('sick', endpointFor('sick', [], 'Unhealthy'));
  const dump = serviceToConfigDump(s);
  assert.deepEqual(JSON.parse(JSON.stringify(dump)), {
    name: 'svc', namespace: 'ns', hostname: 'svc.ns.svc.cluster.local',
    vips: ['n/10.96.0.1'], cidrVips: ['/10.1.0.0/16'], ports: { 80: 8080 },
    endpoints: {
      a: { workloadUid: 'a', port: {}, status: 'Healthy' },
      z: { workloadUid: 'z', port: { 80: 9090 }, status: 'Healthy' },
    },
    subjectAltNames: [], canonical: false, visibility: 'Public',
  });
  assert.deepEqual(Object.keys(dump.endpoints), ['a', 'z']);
});

test('config_dump prints waypoint, load balancer and IP families when set', () => {
  const dump = serviceToConfigDump(convert({
    ...base,
    waypoint: { address: { network: 'n', address: ip('10.0.0.9') }, hboneMtlsPort: 15008 },
    weightedWaypoints: [{ destination: { hostname: { namespace: 'ns', hostname: 'wp' } }, weight: 2 }],
    loadBalancing: { routingPreference: [4], mode: 1 }, ipFamilies: 1,
  }));
  assert.deepEqual(dump.waypoint, { destination: 'n/10.0.0.9', hboneMtlsPort: 15008 });
  assert.deepEqual(dump.weightedWaypoints, [{ destination: { destination: 'ns/wp', hboneMtlsPort: 15008 }, weight: 2 }]);
  assert.deepEqual(dump.loadBalancer, { routingPreferences: ['Node'], mode: 'Strict', healthPolicy: 'OnlyHealthy' });
  assert.equal(dump.ipFamilies, 'IPv4');
  assert.deepEqual(Object.keys(dump), [
    'name', 'namespace', 'hostname', 'vips', 'ports', 'endpoints', 'subjectAltNames', 'waypoint', 'weightedWaypoints',
    'loadBalancer', 'ipFamilies', 'canonical', 'visibility',
  ]);
});
