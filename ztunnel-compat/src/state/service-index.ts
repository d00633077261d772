// SPDX-License-Identifier: Apache-2.0
// Service indexes (ztunnel `ServiceStore`): by "ns/hostname", by hostname
// across namespaces, by VIP (exact, then CIDR longest-prefix), plus endpoints
// staged for services not yet known. Read through ServiceView; only
// StateWriter mutates.
import { flat } from './intern.ts';
import { ipToBytes, prefixContains } from './ip.ts';
import type { Endpoint, Service } from './service.ts';
import type { Workload } from './workload.ts';

export interface ServiceView {
  readonly count: number;
  /** By xDS name "namespace/hostname". */
  byKey(key: string): Service | undefined;
  byNamespacedHostname(namespace: string, hostname: string): Service | undefined;
  /** Every service with this hostname (ServiceEntry allows one per namespace), in arrival order. */
  byHostname(hostname: string): readonly Service[];
  /**
   * ztunnel `get_best_by_vip`: services on the exact VIP, or failing that the
   * longest matching CIDR VIP; then bestService's preference.
   */
  byVip(network: string, ip: string, clientNamespace?: string): Service | undefined;
  /** Every service on the exact VIP. */
  allByVip(network: string, ip: string): readonly Service[];
  /** The services a workload is an endpoint of (ztunnel `get_by_workload`). */
  forWorkload(w: Workload): Service[];
  values(): IterableIterator<Service>;
  /** Endpoints waiting for their service, by "namespace/hostname" then workload uid. */
  readonly stagedServices: ReadonlyMap<string, ReadonlyMap<string, Endpoint>>;
}

/** Replaces `prev` in `list` by `next`, or drops it (calling `emptied` if nothing is left). */
function swap(list: Service[], prev: Service, next: Service | undefined, emptied: () => void): void {
  const i = list.indexOf(prev);
  if (i === -1) return;
  if (next !== undefined) list[i] = next;
  else if (list.length === 1) emptied();
  else list.splice(i, 1);
}

/**
 * ztunnel `ServiceMatch::find_best_match` (its get_best_by_host): one in
 * `clientNamespace`, else the (last) canonical one, else the first. The DNS
 * proxy also passes PREFERED_SERVICE_NAMESPACE, which then comes second, as
 * in ztunnel's find_server.
 */
export function bestService(services: readonly Service[], clientNamespace: string | undefined, preferredNamespace?: string): Service | undefined {
  let canonical: Service | undefined;
  let preferred: Service | undefined;
  for (const s of services) {
    if (clientNamespace !== undefined && s.namespace === clientNamespace) return s;
    if (preferredNamespace !== undefined && s.namespace === preferredNamespace) preferred ??= s;
    if (s.canonical) canonical = s;
  }
  return preferred ?? canonical ?? services[0];
}

interface CidrEntry {
  readonly network: string;
  readonly prefix: Uint8Array;
  readonly prefixLen: number;
  readonly service: Service;
}

export class ServiceIndex implements ServiceView {
  readonly #byKey = new Map<string, Service>();
  readonly #byHost = new Map<string, Service[]>();
  /** network → ip → services; several namespaces may share a VIP. */
  readonly #byVip = new Map<string, Map<string, Service[]>>();
  /** Few in practice; scanned only when the exact lookup misses. */
  #cidrs: CidrEntry[] = [];
  readonly #staged = new Map<string, Map<string, Endpoint>>();

  get count(): number {
    return this.#byKey.size;
  }

  get stagedServices(): ReadonlyMap<string, ReadonlyMap<string, Endpoint>> {
    return this.#staged;
  }

  byKey(key: string): Service | undefined {
    return this.#byKey.get(key);
  }

  byNamespacedHostname(namespace: string, hostname: string): Service | undefined {
    const list = this.#byHost.get(hostname);
    if (list === undefined) return undefined;
    for (const s of list) if (s.namespace === namespace) return s;
    return undefined;
  }

  byHostname(hostname: string): readonly Service[] {
    return [...(this.#byHost.get(hostname) ?? [])];
  }

  byVip(network: string, ip: string, clientNamespace?: string): Service | undefined {
    const list = this.#byVip.get(network)?.get(ip);
    if (list !== undefined) return bestService(list, clientNamespace);
    if (this.#cidrs.length === 0) return undefined;
    return bestService(this.#byCidr(network, ip), clientNamespace);
  }

  allByVip(network: string, ip: string): readonly Service[] {
    return [...(this.#byVip.get(network)?.get(ip) ?? [])];
  }

  #byCidr(network: string, ip: string): Service[] {
    const bytes = ipToBytes(ip);
    if (bytes === undefined) return [];
    let bestLen = -1;
    let out: Service[] = [];
    for (const c of this.#cidrs) {
      if (c.network !== network || c.prefixLen < bestLen || !prefixContains(c.prefix, c.prefixLen, bytes)) continue;
      if (c.prefixLen > bestLen) {
        bestLen = c.prefixLen;
        out = [];
      }
      out.push(c.service);
    }
    return out;
  }

  forWorkload(w: Workload): Service[] {
    const out: Service[] = [];
    for (const key of Object.keys(w.services)) {
      const s = this.#byKey.get(key);
      if (s !== undefined) out.push(s);
    }
    return out;
  }

  values(): IterableIterator<Service> {
    return this.#byKey.values();
  }

  /**
   * Inserts or replaces. A replacement keeps its predecessor's place in the
   * hostname and VIP lists (ztunnel replaces the slot), so "first" stays first.
   */
  upsert(key: string, s: Service): Service | undefined {
    key = flat(key);
    const prev = this.#byKey.get(key);
    this.#byKey.set(key, s);
    if (prev !== undefined) this.#unlink(prev, s);
    const hosts = this.#byHost.get(s.hostname);
    if (hosts === undefined) this.#byHost.set(s.hostname, [s]);
    else if (!hosts.includes(s)) hosts.push(s);
    for (const v of s.vips) {
      let ips = this.#byVip.get(v.network);
      if (ips === undefined) {
        ips = new Map();
        this.#byVip.set(v.network, ips);
      }
      const list = ips.get(v.ip);
      if (list === undefined) ips.set(v.ip, [s]);
      else if (!list.includes(s)) list.push(s);
    }
    for (const c of s.cidrVips) {
      const prefix = ipToBytes(c.ip);
      if (prefix !== undefined) this.#cidrs.push({ network: c.network, prefix, prefixLen: c.prefixLen, service: s });
    }
    return prev;
  }

  remove(key: string): Service | undefined {
    const prev = this.#byKey.get(key);
    if (prev === undefined) return undefined;
    this.#byKey.delete(key);
    this.#unlink(prev, undefined);
    return prev;
  }

  /** Takes `prev` out of every list; where `next` belongs to the same list it takes prev's slot. */
  #unlink(prev: Service, next: Service | undefined): void {
    const hosts = this.#byHost.get(prev.hostname);
    if (hosts !== undefined) swap(hosts, prev, next?.hostname === prev.hostname ? next : undefined, () => this.#byHost.delete(prev.hostname));
    for (const v of prev.vips) {
      const ips = this.#byVip.get(v.network);
      const list = ips?.get(v.ip);
      if (ips === undefined || list === undefined) continue;
      const keep = next?.vips.some((n) => n.network === v.network && n.ip === v.ip) === true ? next : undefined;
      swap(list, prev, keep, () => {
        ips.delete(v.ip);
        if (ips.size === 0) this.#byVip.delete(v.network);
      });
    }
    if (prev.cidrVips.length > 0) this.#cidrs = this.#cidrs.filter((c) => c.service !== prev);
  }

  stage(key: string, ep: Endpoint): void {
    let m = this.#staged.get(key);
    if (m === undefined) {
      m = new Map();
      this.#staged.set(flat(key), m);
    }
    m.set(ep.workloadUid, ep);
  }

  unstage(key: string, workloadUid: string): void {
    const m = this.#staged.get(key);
    if (m === undefined) return;
    m.delete(workloadUid);
    if (m.size === 0) this.#staged.delete(key);
  }

  /** Removes and returns the endpoints staged for `key`. */
  takeStaged(key: string): Map<string, Endpoint> | undefined {
    const m = this.#staged.get(key);
    this.#staged.delete(key);
    return m;
  }

  clearStaged(): void {
    this.#staged.clear();
  }
}

