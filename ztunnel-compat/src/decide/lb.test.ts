// SPDX-License-Identifier: Apache-2.0
// Unit tests of the endpoint-selection helpers; the rules as a whole are
// exercised through decideOutbound in outbound.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProxyState } from '../state/store.ts';
import { ProxyStateUpdater } from '../state/updater.ts';
import { ip, pod, workloadResource } from '../state/testing.ts';
import { localityRank, pickWorkloadIp, weightedIndex } from './lb.ts';

const CLIENT_UID = 'Kubernetes//Pod/client/client';
const uid = (name: string): string => `Kubernetes//Pod/ns/${name}`;

function client(): ReturnType<typeof workloadResource> {
  return workloadResource(pod('client', 'client', '10.0.0.1', { locality: { region: 'r1', zone: 'z1' } }));
}

test('weightedIndex: proportional to weight, zero weights skipped, all-zero → undefined', () => {
  assert.equal(weightedIndex([1, 3], () => 0.24), 0);
  assert.equal(weightedIndex([1, 3], () => 0.25), 1);
  assert.equal(weightedIndex([0, 2, 0], () => 0), 1);
  assert.equal(weightedIndex([0, 2, 0], () => 0.999999), 1);
  assert.equal(weightedIndex([0, 0], () => 0.5), undefined);
  assert.equal(weightedIndex([], () => 0.5), undefined);
});

test('localityRank: FAILOVER counts leading matches; STRICT excludes a partial match', () => {
  const state = new ProxyState();
  new ProxyStateUpdater(state).addressHandler.handle([
    client(),
    workloadResource(pod('x', 'ns', '10.0.1.1', { locality: { region: 'r1', zone: 'z2' } })),
  ], []);
  const src = state.workloads.byUid(CLIENT_UID);
  const dst = state.workloads.byUid(uid('x'));
  assert.ok(src !== undefined && dst !== undefined);
  assert.equal(localityRank(['Region', 'Zone'], false, src, dst), 1);
  assert.equal(localityRank(['Zone', 'Region'], false, src, dst), 0, 'counting stops at the first mismatch');
  assert.equal(localityRank(['Region', 'Zone'], true, src, dst), undefined);
  assert.equal(localityRank(['Region'], true, src, dst), 1);
  assert.equal(localityRank(['Network', 'Region'], true, src, dst), 2);
  assert.equal(localityRank([], true, src, dst), 0);
});

test('pickWorkloadIp: the dialled IP, else the request family within ip_families, else the first allowed', () => {
  const state = new ProxyState();
  new ProxyStateUpdater(state).addressHandler.handle([
    workloadResource(pod('d', 'ns', '10.0.1.1', { addresses: [ip('10.0.1.1'), ip('fd00:1::1')] })),
    workloadResource(pod('v4', 'ns', '10.0.1.2')),
  ], []);
  const dual = state.workloads.byUid(uid('d'));
  const v4 = state.workloads.byUid(uid('v4'));
  assert.ok(dual !== undefined && v4 !== undefined);
  assert.equal(pickWorkloadIp(dual, 'fd00:1::1', 'IPv4'), 'fd00:1::1', 'the IP the client used wins');
  assert.equal(pickWorkloadIp(dual, 'fd00:96::1', undefined), 'fd00:1::1');
  assert.equal(pickWorkloadIp(dual, '10.96.0.1', undefined), '10.0.1.1');
  assert.equal(pickWorkloadIp(dual, 'fd00:96::1', 'IPv4'), '10.0.1.1');
  assert.equal(pickWorkloadIp(v4, 'fd00:96::1', 'Dual'), '10.0.1.2', 'no same-family IP: the first allowed');
  assert.equal(pickWorkloadIp(v4, 'fd00:96::1', 'IPv6'), undefined);
});
