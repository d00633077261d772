// SPDX-License-Identifier: Apache-2.0
// Workload indexes (ztunnel `WorkloadStore`): by uid, by (network, ip) and by
// node. Read through WorkloadView; only StateWriter mutates.
import { indexedByIp, type Workload } from './workload.ts';

export interface WorkloadView {
  readonly count: number;
  byUid(uid: string): Workload | undefined;
  /**
   * The workload at (network, ip). When several claim it (reference §1.2)
   * a uid containing "//Pod/" wins, then HBONE, then the latest inserted.
   * HOST_NETWORK workloads are never found by IP.
   */
  byAddress(network: string, ip: string): Workload | undefined;
  /** Every workload claiming (network, ip), in insertion order. */
  allByAddress(network: string, ip: string): readonly Workload[];
  /** Workloads whose `node` is nodeName ('' matches nothing). */
  onNode(nodeName: string): Workload[];
  values(): IterableIterator<Workload>;
}

/** ztunnel `WorkloadByAddr::get` ranking. */
function rank(w: Workload): number {
  return (w.uid.includes('//Pod/') ? 2 : 0) + (w.protocol === 'HBONE' ? 1 : 0);
}

// Most addresses have one workload: store it bare and only allocate an array on conflict.
type Slot = Workload | Workload[];

export class WorkloadIndex implements WorkloadView {
  readonly #byUid = new Map<string, Workload>();
  /** network → ip → workload(s); nested so lookups build no key strings. */
  readonly #byAddr = new Map<string, Map<string, Slot>>();
  readonly #byNode = new Map<string, Set<Workload>>();

  get count(): number {
    return this.#byUid.size;
  }

  byUid(uid: string): Workload | undefined {
    return this.#byUid.get(uid);
  }

  byAddress(network: string, ip: string): Workload | undefined {
    const slot = this.#byAddr.get(network)?.get(ip);
    if (slot === undefined || !Array.isArray(slot)) return slot;
    let best: Workload | undefined;
    let bestRank = -1;
    for (const w of slot) {
      // `>=`: Rust's max_by_key returns the last of equal maxima.
      const r = rank(w);
      if (r >= bestRank) { best = w; bestRank = r; }
    }
    return best;
  }

  allByAddress(network: string, ip: string): readonly Workload[] {
    const slot = this.#byAddr.get(network)?.get(ip);
    if (slot === undefined) return [];
    return Array.isArray(slot) ? [...slot] : [slot];
  }

  onNode(nodeName: string): Workload[] {
    const set = this.#byNode.get(nodeName);
    return set === undefined ? [] : [...set];
  }

  values(): IterableIterator<Workload> {
    return this.#byUid.values();
  }

  /** Callers remove any previous workload with this uid first. */
  insert(w: Workload): void {
    this.#byUid.set(w.uid, w);
    if (indexedByIp(w)) {
      let ips = this.#byAddr.get(w.network);
      if (ips === undefined) {
        ips = new Map();
        this.#byAddr.set(w.network, ips);
      }
      for (const ip of w.workloadIps) {
        const slot = ips.get(ip);
        if (slot === undefined) ips.set(ip, w);
        else if (Array.isArray(slot)) slot.push(w);
        else ips.set(ip, [slot, w]);
      }
    }
    if (w.node !== '') {
      let set = this.#byNode.get(w.node);
      if (set === undefined) {
        set = new Set();
        this.#byNode.set(w.node, set);
      }
      set.add(w);
    }
  }

  remove(uid: string): Workload | undefined {
    const w = this.#byUid.get(uid);
    if (w === undefined) return undefined;
    this.#byUid.delete(uid);
    const ips = this.#byAddr.get(w.network);
    if (ips !== undefined && indexedByIp(w)) {
      for (const ip of w.workloadIps) {
        const slot = ips.get(ip);
        if (slot === w) ips.delete(ip);
        else if (Array.isArray(slot)) {
          const rest = slot.filter((x) => x !== w);
          const [first] = rest;
          if (first === undefined) ips.delete(ip);
          else ips.set(ip, rest.length === 1 ? first : rest);
        }
      }
      if (ips.size === 0) this.#byAddr.delete(w.network);
    }
    const set = this.#byNode.get(w.node);
    if (set !== undefined) {
      set.delete(w);
      if (set.size === 0) this.#byNode.delete(w.node);
    }
    return w;
  }
}
