// SPDX-License-Identifier: Apache-2.0
// Shared by the two xDS targets: a state loaded with good resources, and the
// handler check. The fuzzed bytes are the `value` of an Any, as the ADS
// client hands each resource of a DeltaDiscoveryResponse to its handler
// (state/updater.ts). A handler must never throw: a malformed resource is a
// NACK with a message, and a NACKed resource leaves the last good state as it
// was (ztunnel keeps the previous version).
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, packResource } from '@skein/ztunnel-compat/xds/proto';
import { parseLocalConfig } from '@skein/ztunnel-compat/xds/local';
import { ProxyState } from '@skein/ztunnel-compat/state/store';
import { ProxyStateUpdater, type XdsHandler, type XdsResource } from '@skein/ztunnel-compat/state/updater';
import { invariant } from '../target.ts';

/** The static-config sample of xds/local.test.ts: workloads, a service with waypoints and LB, two policies. */
export const SAMPLE = {
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

const config = parseLocalConfig(SAMPLE);

export const addressSeeds = (): Buffer[] => config.addresses.map((a) => packResource(ADDRESS_TYPE_URL, a.message).value);
export const policySeeds = (): Buffer[] => config.policies.map((p) => packResource(AUTHORIZATION_TYPE_URL, p.message).value);

function loaded(): { state: ProxyState; updater: ProxyStateUpdater } {
  const state = new ProxyState();
  const updater = new ProxyStateUpdater(state);
  const res = (typeUrl: typeof ADDRESS_TYPE_URL | typeof AUTHORIZATION_TYPE_URL, list: { name: string; message: object }[]): XdsResource[] =>
    list.map((x) => ({ name: x.name, version: '1', resource: packResource(typeUrl, x.message) }));
  const rejected = [...updater.addressHandler.handle(res(ADDRESS_TYPE_URL, config.addresses), []), ...updater.authorizationHandler.handle(res(AUTHORIZATION_TYPE_URL, config.policies), [])];
  if (rejected.length > 0) throw new Error(`fuzz state rejected: ${JSON.stringify(rejected)}`);
  return { state, updater };
}

/** The loaded state and its dump, reused while inputs are rejected (a rejection must leave it as it was). */
let current: { state: ProxyState; updater: ProxyStateUpdater; dump: string } | undefined;

/**
 * Hands `value` to the handler as an update of `name` (a resource the state
 * already holds) and checks the outcome: no throw, at most one rejection
 * with a reason, state (generation and config_dump) unchanged when
 * rejected, config_dump printable and the resource removable when accepted.
 */
export function feed(pick: (u: ProxyStateUpdater) => XdsHandler, name: string, value: Buffer): void {
  if (current === undefined) {
    const fresh = loaded();
    current = { ...fresh, dump: JSON.stringify(fresh.state.configDump()) };
  }
  const { state, updater, dump } = current;
  const handler = pick(updater);
  const generation = state.generation;
  const rejected = handler.handle([{ name, version: '2', resource: { type_url: handler.typeUrl, value } }], []);
  invariant(rejected.length <= 1, `${rejected.length} rejections for one resource`);
  const r = rejected[0];
  if (r !== undefined) {
    invariant(r.name === name && typeof r.reason === 'string' && r.reason.length > 0, `rejection without a reason: ${JSON.stringify(r)}`);
    invariant(state.generation === generation && JSON.stringify(state.configDump()) === dump, 'a NACKed resource changed the state');
    return;
  }
  // Accepted: the state moved on; the next input starts from a fresh one.
  current = undefined;
  JSON.stringify(state.configDump());
  // Removing it again must work whatever was stored.
  invariant(handler.handle([], [name]).length === 0, 'a removal was rejected');
  JSON.stringify(state.configDump());
}
