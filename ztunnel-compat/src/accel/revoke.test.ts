// SPDX-License-Identifier: Apache-2.0
// Which open same-node flows a policy change revokes: decided with the full
// policy, ports included, for the flows the kernel approved.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProxyState } from '../state/store.ts';
import { ProxyStateUpdater, type XdsResource } from '../state/updater.ts';
import { pod, policyResource, workloadResource } from '../state/testing.ts';
import type { MessageInit, Workload as XdsWorkload } from '../xds/proto.ts';
import { revoked } from './revoke.ts';

const NODE = 'node-a';

function stateOf(resources: XdsResource[]): ProxyState {
  const state = new ProxyState();
  assert.deepEqual(new ProxyStateUpdater(state).addressHandler.handle(resources, []), []);
  return state;
}

test('revocation picks exactly the approved flows the destination\'s full policy now denies', () => {
  const here = (name: string, addr: string, extra: MessageInit<XdsWorkload> = {}): XdsResource => workloadResource(pod(name, 'ns', addr, { node: NODE, serviceAccount: name, ...extra }));
  const state = stateOf([here('a', '10.0.0.1'), here('b', '10.0.0.2'), here('srv', '10.0.0.3', { authorizationPolicies: ['ns/deny-a-8080'] })]);
  // A port-specific policy: not expressible in the kernel's maps, but revocation decides with the full policy.
  new ProxyStateUpdater(state).authorizationHandler.handle([
    policyResource({ name: 'deny-a-8080', namespace: 'ns', scope: 2, action: 1, rules: [{ clauses: [{ matches: [{ principals: [{ exact: 'cluster.local/ns/ns/sa/a' }], destinationPorts: [8080] }] }] }] }),
  ], []);
  const byIp = new Map([['10.0.0.1', 'a'], ['10.0.0.2', 'b']]);
  const view = {
    workloadByNetns: (c: bigint) => (c === 3n ? state.workloads.byAddress('', '10.0.0.3') : undefined),
    netnsFdOf: (uid: string) => (uid.endsWith('/a') ? 11 : uid.endsWith('/b') ? 12 : undefined),
  };
  const approvals = [
    { clientIp: '10.0.0.1', clientPort: 40000, dstIp: '10.0.0.3', dstNetns: 3n, dstPort: 8080 },
    { clientIp: '10.0.0.1', clientPort: 40001, dstIp: '10.0.0.3', dstNetns: 3n, dstPort: 9090 },
    { clientIp: '10.0.0.2', clientPort: 40002, dstIp: '10.0.0.3', dstNetns: 3n, dstPort: 8080 },
    { clientIp: '10.0.0.9', clientPort: 40003, dstIp: '10.0.0.3', dstNetns: 3n, dstPort: 8080 },
  ];
  const r = revoked(state, '', view, approvals);
  assert.deepEqual(r.map((x) => [byIp.get(x.approval.clientIp), x.approval.clientPort, x.clientNetnsFd, x.dstIp]), [['a', 40000, 11, '10.0.0.3']]);
});
