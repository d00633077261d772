// SPDX-License-Identifier: Apache-2.0
// ProxyStateUpdater (ztunnel `src/xds.rs`): the only writer of ProxyState.
// Two typed xDS handlers turn one DeltaDiscoveryResponse each into one state
// batch; a resource that fails to decode or convert is reported (partial
// NACK) and leaves the previous version in place, while the good ones in the
// same response are applied. `replaceAll` loads static config.
import type { XdsHandler, XdsResource, Rejected } from '../xds/client.ts';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, unpackResource } from '../xds/proto.ts';
import { policyFromXds, policyKey, type Policy } from './policy.ts';
import { flat } from './intern.ts';
import { serviceFromXds, type Service } from './service.ts';
import { workloadFromXds, XDS_WORKLOAD_DEFAULTS, type Workload, type WorkloadDefaults } from './workload.ts';
import type { ProxyState, StateWriter } from './store.ts';

export type { XdsHandler, XdsResource, Rejected } from '../xds/client.ts';
export { nackMessage } from '../xds/client.ts';

/** Everything static config (LOCAL_XDS_PATH) holds; it replaces all state. */
export interface StaticState {
  readonly workloads: readonly Workload[];
  readonly services: readonly Service[];
  /** Stored under `policyKey(p)` ("namespace/name"), as istiod names them. */
  readonly policies: readonly Policy[];
}

function reasonOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * ztunnel `remove_internal`: a removal name is a workload uid if one is
 * stored, otherwise "namespace/hostname" of a service. Names whose hostname
 * part holds another '/' are uids of already-gone workloads, never services.
 */
function removeAddress(w: StateWriter, name: string): void {
  if (w.removeWorkload(name)) return;
  const slash = name.indexOf('/');
  if (slash === -1 || name.includes('/', slash + 1)) return;
  w.removeService(name);
}

export class ProxyStateUpdater {
  readonly #state: ProxyState;
  readonly #defaults: WorkloadDefaults;
  /** WDS: type.googleapis.com/istio.workload.Address (workloads and services). */
  readonly addressHandler: XdsHandler;
  /** type.googleapis.com/istio.security.Authorization. */
  readonly authorizationHandler: XdsHandler;

  /** `workloadDefaults`: STATIC_WORKLOAD_DEFAULTS for static config, whose empty strings stay empty. */
  constructor(state: ProxyState, options: { workloadDefaults?: WorkloadDefaults } = {}) {
    this.#state = state;
    this.#defaults = options.workloadDefaults ?? XDS_WORKLOAD_DEFAULTS;
    this.addressHandler = { typeUrl: ADDRESS_TYPE_URL, handle: (res, removed) => this.#handleAddresses(res, removed) };
    this.authorizationHandler = {
      typeUrl: AUTHORIZATION_TYPE_URL,
      handle: (res, removed) => this.#handleAuthorizations(res, removed),
    };
  }

  #handleAddresses(resources: readonly XdsResource[], removed: readonly string[]): Rejected[] {
    const rejected: Rejected[] = [];
    this.#state.apply((w) => {
      for (const r of resources) {
        try {
          // Decode and convert fully before touching state, so a bad
          // resource leaves its previous version in place.
          const a = unpackResource(ADDRESS_TYPE_URL, r.resource);
          if (a.workload !== undefined) w.upsertWorkload(workloadFromXds(a.workload, this.#defaults));
          else if (a.service !== undefined) w.upsertService(serviceFromXds(a.service));
          else rejected.push({ name: r.name, reason: 'unknown address type' });
        } catch (err) {
          rejected.push({ name: r.name, reason: reasonOf(err) });
        }
      }
      for (const name of removed) removeAddress(w, name);
    });
    return rejected;
  }

  #handleAuthorizations(resources: readonly XdsResource[], removed: readonly string[]): Rejected[] {
    const rejected: Rejected[] = [];
    this.#state.apply((w) => {
      for (const r of resources) {
        try {
          w.upsertPolicy(flat(r.name), policyFromXds(unpackResource(AUTHORIZATION_TYPE_URL, r.resource)));
        } catch (err) {
          rejected.push({ name: r.name, reason: reasonOf(err) });
        }
      }
      for (const name of removed) w.removePolicy(name);
    });
    return rejected;
  }

  /** ztunnel `LocalClient::load_config`: start from empty, then insert everything. */
  replaceAll(config: StaticState): void {
    this.#state.apply((w) => {
      w.clear();
      // Services first, so workload endpoints attach directly instead of being staged.
      for (const s of config.services) w.upsertService(s);
      for (const wl of config.workloads) w.upsertWorkload(wl);
      for (const p of config.policies) w.upsertPolicy(policyKey(p), p);
    });
  }
}
