// SPDX-License-Identifier: Apache-2.0
// The authorization policies in force, keyed by xDS resource name, with the
// indexes that make "which policies apply to this workload" cost only the
// policies that apply (ztunnel `src/state/policy.rs` `PolicyStore`).
//
// Keys: the store is keyed by the resource name the xDS updater hands it
// (istiod names Authorization resources "namespace/name", which is also
// `policyKey(p)` and the form of `Workload.authorization_policies` entries, so
// selector keys look up the same map). Global policies are indexed under
// namespace "" whatever namespace they carry, as ztunnel does.
import type { Policy } from './policy.ts';

export class PolicyStore {
  readonly #byName = new Map<string, Policy>();
  /** Global-scope policies by resource name. */
  readonly #global = new Map<string, Policy>();
  /** Namespace-scope policies: namespace → resource name → policy. */
  readonly #byNamespace = new Map<string, Map<string, Policy>>();
  #generation = 0;

  /** Adds or replaces the policy under `resourceName`. */
  insert(resourceName: string, p: Policy): void {
    this.#unindex(resourceName);
    this.#byName.set(resourceName, p);
    if (p.scope === 'Global') {
      this.#global.set(resourceName, p);
    } else if (p.scope === 'Namespace') {
      let m = this.#byNamespace.get(p.namespace);
      if (m === undefined) this.#byNamespace.set(p.namespace, m = new Map<string, Policy>());
      m.set(resourceName, p);
    }
    this.#generation++;
  }

  /** Returns false (and changes nothing) if there was no such policy. */
  remove(resourceName: string): boolean {
    if (!this.#unindex(resourceName)) return false;
    this.#byName.delete(resourceName);
    this.#generation++;
    return true;
  }

  /** Removes every policy (a fresh xDS state replaces the old one). */
  clear(): void {
    if (this.#byName.size === 0) return;
    this.#byName.clear();
    this.#global.clear();
    this.#byNamespace.clear();
    this.#generation++;
  }

  get(resourceName: string): Policy | undefined {
    return this.#byName.get(resourceName);
  }

  /**
   * Policies that apply to a destination workload (reference §7), in
   * ztunnel's order: the workload namespace's Namespace-scope policies, then
   * all Global ones, then the workload's `authorization_policies` keys. A key
   * not in the store is skipped and listed in `missing` (ztunnel warns
   * "skipping unknown policy"). A key naming a policy already included
   * through its scope is not repeated: same verdict, no duplicate dry-run notes.
   */
  forWorkload(namespace: string, selectorKeys: readonly string[]): { policies: Policy[]; missing: string[] } {
    const policies: Policy[] = [];
    const missing: string[] = [];
    const ns = this.#byNamespace.get(namespace);
    if (ns !== undefined) for (const p of ns.values()) policies.push(p);
    for (const p of this.#global.values()) policies.push(p);
    for (const key of selectorKeys) {
      const p = this.#byName.get(key);
      if (p === undefined) missing.push(key);
      else if (!(p.scope === 'Global' || (p.scope === 'Namespace' && p.namespace === namespace))) policies.push(p);
    }
    return { policies, missing };
  }

  get size(): number {
    return this.#byName.size;
  }

  values(): IterableIterator<Policy> {
    return this.#byName.values();
  }

  /** Monotonic counter bumped on every change (for connection re-checks). */
  get generation(): number {
    return this.#generation;
  }

  /** Drops `resourceName` from the scope indexes; returns whether it existed. */
  #unindex(resourceName: string): boolean {
    const old = this.#byName.get(resourceName);
    if (old === undefined) return false;
    if (old.scope === 'Global') {
      this.#global.delete(resourceName);
    } else if (old.scope === 'Namespace') {
      const m = this.#byNamespace.get(old.namespace);
      if (m !== undefined) {
        m.delete(resourceName);
        if (m.size === 0) this.#byNamespace.delete(old.namespace);
      }
    }
    return true;
  }
}
