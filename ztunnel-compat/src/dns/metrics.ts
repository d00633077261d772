// SPDX-License-Identifier: Apache-2.0
// ztunnel's DNS metrics (all "unstable" there too): requests, and what went
// upstream, by query type and protocol and the asking workload's canonical
// service and revision.
import { Counter, Histogram, type Registry } from 'prom-client';
import type { IdleSeries } from '../metrics/idle-series.ts';
import type { Workload } from '../state/workload.ts';

const LABELS = ['request_query_type', 'request_protocol', 'source_canonical_service', 'source_canonical_revision'] as const;
type Labels = Record<(typeof LABELS)[number], string>;

export class DnsMetrics {
  readonly #requests: Counter<(typeof LABELS)[number]>;
  readonly #upstream: Counter<(typeof LABELS)[number]>;
  readonly #failures: Counter<(typeof LABELS)[number]>;
  readonly #duration: Histogram<(typeof LABELS)[number]>;
  readonly #used: (l: Labels) => void;

  /** `idle`: drops the series of asking workloads that stopped asking (SKEIN_STATS_EVICTION_INTERVAL). */
  constructor(registry: Registry, idle?: IdleSeries) {
    const registers = [registry];
    const labelNames = LABELS;
    this.#requests = new Counter({ name: 'istio_dns_requests_total', help: 'Total number of DNS requests (unstable)', labelNames, registers });
    this.#upstream = new Counter({ name: 'istio_dns_upstream_requests_total', help: 'Total number of DNS requests forwarded to upstream (unstable)', labelNames, registers });
    this.#failures = new Counter({ name: 'istio_dns_upstream_failures_total', help: 'Total number of DNS requests that failed to forward upstream (unstable)', labelNames, registers });
    this.#duration = new Histogram({
      name: 'istio_dns_upstream_request_duration_seconds', help: 'Total time in seconds Istio takes to get DNS response from upstream (unstable)',
      labelNames, registers, buckets: [0.001, 0.005, 0.01, 0.1, 1, 5],
    });
    this.#used = idle?.group([this.#requests, this.#upstream, this.#failures, this.#duration]) ?? (() => undefined);
  }

  static labels(type: string, protocol: 'udp' | 'tcp', source: Workload | undefined): Labels {
    return {
      request_query_type: type,
      request_protocol: protocol,
      source_canonical_service: source?.canonicalName || 'unknown',
      source_canonical_revision: source?.canonicalRevision || 'unknown',
    };
  }

  request(l: Labels): void {
    this.#requests.inc(l);
    this.#used(l);
  }

  upstream(l: Labels, seconds: number, ok: boolean): void {
    this.#used(l);
    this.#upstream.inc(l);
    this.#duration.observe(l, seconds);
    if (!ok) this.#failures.inc(l);
  }
}
