// SPDX-License-Identifier: Apache-2.0
// ProxyState (ztunnel `src/state.rs`): the single source of truth that the
// proxy, the decide/ functions and the kernel-map projection read. Every
// lookup is a synchronous O(1) `by*`/`find*` call. Writes happen only inside
// `apply(fn)` (called by ProxyStateUpdater): one batch, one generation bump,
// one synchronous change notification.
import { PolicyStore } from './policy-store.ts';
import { policyKey, policyToConfigDump, type Policy, type PolicyDump } from './policy.ts';
import { workloadToConfigDump, type Workload, type WorkloadDump } from './workload.ts';
import {
  endpointFor, endpointsOf, endpointToConfigDump, serviceKey, serviceToConfigDump,
  type Endpoint, type EndpointDump, type Service, type ServiceDump,
} from './service.ts';
import { WorkloadIndex, type WorkloadView } from './workload-index.ts';
import { ServiceIndex, type ServiceView } from './service-index.ts';

export type { WorkloadView } from './workload-index.ts';
export type { ServiceView } from './service-index.ts';

export interface ChangeSet {
  /** Keys inserted or replaced in the batch. */
  readonly added: readonly string[];
  readonly removed: readonly string[];
}

/** What one applied batch changed, by key: workload uid, service "ns/hostname", policy "ns/name". */
export interface StateChange {
  readonly generation: number;
  readonly workloads: ChangeSet;
  readonly services: ChangeSet & {
    /** Services (present or staged) whose endpoint set changed without the service itself changing. */
    readonly endpointsChanged: readonly string[];
  };
  readonly policies: ChangeSet;
}

export type ChangeListener = (change: StateChange) => void;

export interface ProxyStateOptions {
  /**
   * Where a throwing change listener's error goes; the other listeners still
   * run and the batch stays applied. Default: rethrown from `apply` after all
   * listeners ran (as EventEmitter#emit would). The daemon passes its logger.
   */
  onListenerError?: (error: unknown, change: StateChange) => void;
}

/** ztunnel `Address`: what a (network, ip) destination names. */
export type FoundAddress =
  | { readonly kind: 'workload'; readonly workload: Workload }
  | { readonly kind: 'service'; readonly service: Service };

/** The state part of /config_dump, as ztunnel's `ProxyStateSerialization` prints it. */
export interface StateDump {
  workloads: WorkloadDump[];
  services: ServiceDump[];
  policies: PolicyDump[];
  stagedServices: Record<string, Record<string, EndpointDump>>;
}

class Changes {
  readonly workloads = new Keys();
  readonly services = new Keys();
  readonly endpoints = new Set<string>();
  readonly policies = new Keys();

  get empty(): boolean {
    return this.workloads.empty && this.services.empty && this.policies.empty && this.endpoints.size === 0;
  }
}

class Keys {
  readonly added = new Set<string>();
  readonly removed = new Set<string>();

  add(k: string): void {
    this.removed.delete(k);
    this.added.add(k);
  }

  remove(k: string): void {
    this.added.delete(k);
    this.removed.add(k);
  }

  get empty(): boolean {
    return this.added.size === 0 && this.removed.size === 0;
  }

  freeze(): ChangeSet {
    return { added: [...this.added], removed: [...this.removed] };
  }
}

/**
 * The write side, handed to `ProxyState.apply` callbacks. Keeps workloads,
 * services and endpoints consistent with each other (reference §1.2):
 * - a workload replaces its predecessor completely, endpoints included;
 * - endpoints for a service not (yet) known are staged, and attached when it arrives;
 * - removing a workload removes its endpoints everywhere;
 * - removing a service puts its endpoints back on stage, so re-adding it restores them.
 */
export class StateWriter {
  readonly #w: WorkloadIndex;
  readonly #s: ServiceIndex;
  readonly #p: PolicyStore;
  readonly #c: Changes;
  #open = true;

  /** @internal Only ProxyState.apply makes writers. */
  constructor(w: WorkloadIndex, s: ServiceIndex, p: PolicyStore, c: Changes) {
    this.#w = w;
    this.#s = s;
    this.#p = p;
    this.#c = c;
  }

  /** @internal A writer kept past its batch would write unannounced. */
  close(): void {
    this.#open = false;
  }

  #check(): void {
    if (!this.#open) throw new Error('StateWriter used after its ProxyState.apply batch ended');
  }

  upsertWorkload(w: Workload): void {
    this.#check();
    const prev = this.#w.remove(w.uid);
    if (prev !== undefined) this.#dropEndpoints(prev);
    this.#w.insert(w);
    for (const key of Object.keys(w.services)) {
      const ep = endpointFor(w.uid, w.services[key] ?? [], w.status);
      const svc = this.#s.byKey(key);
      if (svc !== undefined) endpointsOf(svc).set(w.uid, ep);
      else this.#s.stage(key, ep);
      this.#c.endpoints.add(key);
    }
    this.#c.workloads.add(w.uid);
  }

  removeWorkload(uid: string): boolean {
    this.#check();
    const prev = this.#w.remove(uid);
    if (prev === undefined) return false;
    this.#dropEndpoints(prev);
    this.#c.workloads.remove(uid);
    return true;
  }

  #dropEndpoints(prev: Workload): void {
    for (const key of Object.keys(prev.services)) {
      const svc = this.#s.byKey(key);
      if (svc !== undefined) endpointsOf(svc).delete(prev.uid);
      this.#s.unstage(key, prev.uid);
      this.#c.endpoints.add(key);
    }
  }

  /** Inserts or replaces; the endpoints already known for it (stored or staged) carry over. */
  upsertService(s: Service): void {
    this.#check();
    const key = serviceKey(s.namespace, s.hostname);
    const eps = endpointsOf(s);
    const prev = this.#s.upsert(key, s);
    if (prev !== undefined) for (const [uid, ep] of prev.endpoints) eps.set(uid, ep);
    const staged = this.#s.takeStaged(key);
    if (staged !== undefined) for (const [uid, ep] of staged) eps.set(uid, ep);
    this.#c.services.add(key);
  }

  /** `key` is the xDS name "namespace/hostname". */
  removeService(key: string): boolean {
    this.#check();
    const prev = this.#s.remove(key);
    if (prev === undefined) return false;
    for (const ep of prev.endpoints.values()) this.#s.stage(key, ep);
    this.#c.services.remove(key);
    return true;
  }

  upsertPolicy(name: string, p: Policy): void {
    this.#check();
    this.#p.insert(name, p);
    this.#c.policies.add(name);
  }

  removePolicy(name: string): boolean {
    this.#check();
    if (!this.#p.remove(name)) return false;
    this.#c.policies.remove(name);
    return true;
  }

  /** Empties everything (static config replaces all state); every key is reported removed. */
  clear(): void {
    this.#check();
    for (const w of [...this.#w.values()]) this.removeWorkload(w.uid);
    for (const s of [...this.#s.values()]) this.removeService(serviceKey(s.namespace, s.hostname));
    this.#s.clearStaged();
    // PolicyStore has no key listing; istiod names policies policyKey(p).
    for (const p of this.#p.values()) this.#c.policies.remove(policyKey(p));
    this.#p.clear();
  }
}

export class ProxyState {
  readonly #w = new WorkloadIndex();
  readonly #s = new ServiceIndex();
  readonly #listeners: ChangeListener[] = [];
  readonly #onListenerError: ((error: unknown, change: StateChange) => void) | undefined;
  #generation = 0;
  #writing = false;

  readonly workloads: WorkloadView = this.#w;
  readonly services: ServiceView = this.#s;
  readonly policies: PolicyStore = new PolicyStore();

  constructor(options: ProxyStateOptions = {}) {
    this.#onListenerError = options.onListenerError;
  }

  /** Bumped once per batch that changed anything. */
  get generation(): number {
    return this.#generation;
  }

  /**
   * Calls `fn` after every applied batch, synchronously, in registration
   * order. Returns the unsubscribe function.
   */
  onChange(fn: ChangeListener): () => void {
    this.#listeners.push(fn);
    return () => {
      const i = this.#listeners.indexOf(fn);
      if (i !== -1) this.#listeners.splice(i, 1);
    };
  }

  /**
   * The one way to write: runs `fn` with a writer, then (if anything changed)
   * bumps the generation and notifies listeners. Returns the change, or
   * undefined when nothing changed. A listener that throws does not stop the
   * others (see ProxyStateOptions.onListenerError).
   */
  apply(fn: (w: StateWriter) => void): StateChange | undefined {
    if (this.#writing) throw new Error('ProxyState.apply is not reentrant (listeners must not write)');
    this.#writing = true;
    try {
      const c = new Changes();
      const writer = new StateWriter(this.#w, this.#s, this.policies, c);
      let failed: { error: unknown } | undefined;
      try {
        fn(writer);
      } catch (error) {
        failed = { error };
      } finally {
        writer.close();
      }
      // Whatever was written before a throw is in state: publish it anyway.
      const change = c.empty ? undefined : this.#publish(c);
      if (failed !== undefined) throw failed.error;
      return change;
    } finally {
      this.#writing = false;
    }
  }

  #publish(c: Changes): StateChange {
    const { added, removed } = c.services;
    const change: StateChange = {
      generation: ++this.#generation,
      workloads: c.workloads.freeze(),
      services: { ...c.services.freeze(), endpointsChanged: [...c.endpoints].filter((k) => !added.has(k) && !removed.has(k)) },
      policies: c.policies.freeze(),
    };
    let first: { error: unknown } | undefined;
    for (const l of [...this.#listeners]) {
      try {
        l(change);
      } catch (error) {
        if (this.#onListenerError !== undefined) this.#onListenerError(error, change);
        else first ??= { error };
      }
    }
    if (first !== undefined) throw first.error;
    return change;
  }

  /** ztunnel `find_address`: a workload at (network, ip), else a service VIP. */
  findAddress(network: string, ip: string): FoundAddress | undefined {
    const workload = this.#w.byAddress(network, ip);
    if (workload !== undefined) return { kind: 'workload', workload };
    const service = this.#s.byVip(network, ip);
    return service === undefined ? undefined : { kind: 'service', service };
  }

  /**
   * ztunnel's `ProxyStateSerialization`: workloads sorted by uid, services by
   * hostname, policies by key, and the staged endpoints keyed "ns/hostname".
   */
  configDump(): StateDump {
    const workloads = [...this.#w.values()].sort((a, b) => cmp(a.uid, b.uid)).map(workloadToConfigDump);
    const services = [...this.#s.values()]
      .sort((a, b) => cmp(a.hostname, b.hostname))
      .map(serviceToConfigDump);
    const policies = [...this.policies.values()]
      .map((p) => ({ key: policyKey(p), p }))
      .sort((a, b) => cmp(a.key, b.key))
      .map(({ p }) => policyToConfigDump(p));
    const stagedServices: Record<string, Record<string, EndpointDump>> = {};
    for (const [key, eps] of this.#s.stagedServices) stagedServices[key] = endpointsDump(eps);
    return { workloads, services, policies, stagedServices };
  }
}

function endpointsDump(eps: ReadonlyMap<string, Endpoint>): Record<string, EndpointDump> {
  const out: Record<string, EndpointDump> = {};
  for (const [uid, ep] of eps) out[uid] = endpointToConfigDump(ep);
  return out;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

