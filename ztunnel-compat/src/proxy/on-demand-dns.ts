// SPDX-License-Identifier: Apache-2.0
// On-demand DNS (ztunnel's resolve_on_demand_dns): an endpoint known only by
// hostname (a ServiceEntry with DNS resolution) is looked up when a
// connection needs it, from the node proxy's own namespace with the
// nameservers of its resolv.conf. Answers are kept for their TTL, and one
// lookup serves every connection waiting for the same name; the address is
// picked by decide/lb.ts (pickResolvedIp).
import dns from 'node:dns';
import fs from 'node:fs';
import { Counter, type Registry } from 'prom-client';
import { pickResolvedIp } from '../decide/lb.ts';
import type { IdleSeries } from '../metrics/idle-series.ts';
import { nameservers } from '../dns/resolv-conf.ts';

export class OnDemandDnsError extends Error {
  override name = 'OnDemandDnsError';
}

/** ztunnel's labels: the asking workload's source_* labels, and the hostname. */
export type OnDemandDnsLabels = Record<
  'source_workload' | 'source_canonical_service' | 'source_canonical_revision' | 'source_workload_namespace'
  | 'source_principal' | 'source_app' | 'source_version' | 'source_cluster' | 'hostname', string>;

const LABEL_NAMES = [
  'source_workload', 'source_canonical_service', 'source_canonical_revision', 'source_workload_namespace',
  'source_principal', 'source_app', 'source_version', 'source_cluster', 'hostname',
] as const;

interface Answer {
  v4: string[];
  v6: string[];
  expiresAt: number;
}

/** Kept at most this long whatever the TTL says, so a moved endpoint is found again. */
const MAX_TTL_S = 300;
const TIMEOUT_MS = 2000;

export interface OnDemandDnsOptions {
  resolvConf: string;
  ipv6: boolean;
  registry: Registry;
  /** Drops the series of label sets that stopped counting (SKEIN_STATS_EVICTION_INTERVAL). */
  idle?: IdleSeries;
  now?: () => number;
  random?: () => number;
}

export class OnDemandDns {
  readonly #o: OnDemandDnsOptions;
  readonly #cache = new Map<string, Answer>();
  readonly #pending = new Map<string, Promise<Answer>>();
  readonly #lookups: Counter<(typeof LABEL_NAMES)[number]>;
  readonly #misses: Counter<(typeof LABEL_NAMES)[number]>;
  readonly #used: (l: OnDemandDnsLabels) => void;

  constructor(o: OnDemandDnsOptions) {
    this.#o = o;
    const registers = [o.registry];
    this.#lookups = new Counter({ name: 'istio_on_demand_dns_total', help: 'The total number of requests that used on-demand DNS (unstable)', labelNames: LABEL_NAMES, registers });
    this.#misses = new Counter({ name: 'istio_on_demand_dns_cache_misses_total', help: 'The total number of cache misses for requests on-demand DNS (unstable)', labelNames: LABEL_NAMES, registers });
    this.#used = o.idle?.group([this.#lookups, this.#misses]) ?? (() => undefined);
  }

  /** Names with a kept answer: those looked up within their TTL (at most MAX_TTL_S). */
  get cached(): number {
    return this.#cache.size;
  }

  /** One address for `hostname`, of `requestIp`'s family when there is one. */
  async resolve(hostname: string, requestIp: string, labels: OnDemandDnsLabels): Promise<string> {
    this.#lookups.inc(labels);
    this.#used(labels);
    const now = this.#now();
    let answer = this.#cache.get(hostname);
    if (answer === undefined || answer.expiresAt <= now) {
      this.#misses.inc(labels);
      answer = await this.#lookupOnce(hostname);
    }
    const ip = pickResolvedIp(answer.v4, answer.v6, requestIp, this.#o.random ?? Math.random);
    if (ip === undefined) throw new OnDemandDnsError(`${hostname} resolved to no address`);
    return ip;
  }

  /** The monotonic clock: a wall clock stepped back must not keep answers past their TTL. */
  #now(): number {
    return this.#o.now?.() ?? performance.now();
  }

  #lookupOnce(hostname: string): Promise<Answer> {
    let p = this.#pending.get(hostname);
    if (p === undefined) {
      p = this.#lookup(hostname).finally(() => { this.#pending.delete(hostname); });
      this.#pending.set(hostname, p);
    }
    return p;
  }

  async #lookup(hostname: string): Promise<Answer> {
    const r = new dns.promises.Resolver({ timeout: TIMEOUT_MS, tries: 2 });
    let servers: string[] = [];
    try {
      servers = nameservers(fs.readFileSync(this.#o.resolvConf, 'utf8'));
    } catch {
      // No resolv.conf: the system's defaults.
    }
    if (servers.length > 0) r.setServers(servers);
    const [a, aaaa] = await Promise.allSettled([
      r.resolve4(hostname, { ttl: true }),
      this.#o.ipv6 ? r.resolve6(hostname, { ttl: true }) : Promise.resolve([]),
    ]);
    const v4 = a.status === 'fulfilled' ? a.value : [];
    const v6 = aaaa.status === 'fulfilled' ? aaaa.value : [];
    if (v4.length + v6.length === 0) {
      const why = [a, aaaa].flatMap((x) => (x.status === 'rejected' ? [(x.reason as Error).message] : []));
      throw new OnDemandDnsError(`DNS lookup of ${hostname} failed${why.length > 0 ? `: ${why.join('; ')}` : ': no addresses'}`);
    }
    const ttl = Math.min(MAX_TTL_S, ...[...v4, ...v6].map((x) => Math.max(1, x.ttl)));
    const now = this.#now();
    const answer = { v4: v4.map((x) => x.address), v6: v6.map((x) => x.address), expiresAt: now + ttl * 1000 };
    // Expired answers go here: a name dialled once (a ServiceEntry since
    // removed) would otherwise stay for the daemon's life.
    for (const [name, a] of this.#cache) if (a.expiresAt <= now) this.#cache.delete(name);
    this.#cache.set(hostname, answer);
    return answer;
  }
}
