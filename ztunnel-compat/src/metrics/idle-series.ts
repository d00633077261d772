// SPDX-License-Identifier: Apache-2.0
// Label sets of prom-client metrics that nothing has counted for a while,
// dropped from the scrape (SKEIN_STATS_EVICTION_INTERVAL). The DNS metrics
// are labelled by the asking workload, whose names and revisions come and go
// with pods; kept for every one that ever was, the scrape grows without
// bound (istio/ztunnel#1719). istio_tcp_* (proxy/metrics.ts), whose label
// sets with open connections also stay, are swept here too (sweep()).

/** What a prom-client Counter or Histogram offers for this. */
interface Removable<L extends string> {
  remove(labels: Partial<Record<L, string | number>>): void;
}

export interface IdleSeriesOptions {
  /** Drop a label set nothing has counted for this long (0: never). Checked every quarter of it. */
  evictAfterMs: number;
  /** A monotonic clock in ms. Tests pass their own and call evictIdle themselves: there is no timer then. */
  now?: () => number;
}

/** The sweep runs every quarter of the interval, but no more often than once a second, and no less often than a timer can wait (2^31 - 1 ms). */
export function sweepEveryMs(evictAfterMs: number): number {
  return Math.min(0x7fff_ffff, Math.max(1000, Math.ceil(evictAfterMs / 4)));
}

/** A table of label sets swept with the groups: given the clock's now and the interval, drops what is idle and says how many. */
export type Sweep = (now: number, evictAfterMs: number) => number;

interface Group {
  metrics: readonly Removable<string>[];
  seen: Map<string, { labels: Record<string, string>; at: number }>;
}

export class IdleSeries {
  readonly #evictAfterMs: number;
  readonly #now: () => number;
  readonly #groups: Group[] = [];
  readonly #sweeps: Sweep[] = [];
  readonly #timer: NodeJS.Timeout | undefined;

  constructor(o: IdleSeriesOptions) {
    this.#evictAfterMs = o.evictAfterMs;
    this.#now = o.now ?? (() => performance.now());
    if (o.evictAfterMs > 0 && o.now === undefined) {
      this.#timer = setInterval(() => { this.evictIdle(); }, sweepEveryMs(o.evictAfterMs));
      this.#timer.unref();
    }
  }

  /** False with an interval of 0: nothing is ever dropped, so nothing need be stamped. */
  get evicting(): boolean {
    return this.#evictAfterMs > 0;
  }

  /** The clock label sets are stamped with. */
  now(): number {
    return this.#now();
  }

  /** A table of one's own (TcpMetrics), swept with the groups. */
  sweep(fn: Sweep): void {
    if (this.evicting) this.#sweeps.push(fn);
  }

  /**
   * Metrics counted with the same label sets; the function returned is
   * called with a set's labels each time one of them counts.
   */
  group<L extends string>(metrics: readonly Removable<L>[]): (labels: Record<L, string>) => void {
    if (!this.evicting) return () => undefined;
    const g: Group = { metrics, seen: new Map() };
    this.#groups.push(g);
    return (labels) => {
      const key = Object.values<string>(labels).join('\u0000');
      const s = g.seen.get(key);
      if (s === undefined) g.seen.set(key, { labels, at: this.#now() });
      else s.at = this.#now();
    };
  }

  /** Drops the label sets idle for the interval; returns how many went. */
  evictIdle(): number {
    if (!this.evicting) return 0;
    const now = this.#now();
    const before = now - this.#evictAfterMs;
    let n = 0;
    for (const sweep of this.#sweeps) n += sweep(now, this.#evictAfterMs);
    for (const g of this.#groups) {
      for (const [key, s] of g.seen) {
        if (s.at > before) continue;
        g.seen.delete(key);
        for (const m of g.metrics) m.remove(s.labels);
        n++;
      }
    }
    return n;
  }

  close(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
  }
}
