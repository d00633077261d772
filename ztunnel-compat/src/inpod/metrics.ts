// SPDX-License-Identifier: Apache-2.0
// ztunnel's in-pod workload manager metrics (its inpod/metrics.rs): how many
// pods have a running proxy, how many are waiting for one, and how many
// proxies were started and stopped. ztunnel registers them in a
// `workload_manager` sub-registry of its root registry (src/app.rs), so they
// have no `istio_` prefix; Istio's ztunnel dashboard reads them so.
import { Counter, Gauge, type Registry } from 'prom-client';

export interface ProxyCounts {
  running: number;
  pending: number;
}

export class InpodMetrics {
  readonly #started: Counter;
  readonly #stopped: Counter;
  #counts: () => ProxyCounts = () => ({ running: 0, pending: 0 });

  constructor(registry: Registry) {
    const registers = [registry];
    const counts = (): ProxyCounts => this.#counts();
    new Gauge({
      name: 'workload_manager_active_proxy_count', help: 'The total number current workloads with active proxies (unstable)', registers,
      collect() { this.set(counts().running); },
    });
    new Gauge({
      name: 'workload_manager_pending_proxy_count', help: 'The total number current workloads with pending proxies (unstable)', registers,
      collect() { this.set(counts().pending); },
    });
    this.#started = new Counter({ name: 'workload_manager_proxies_started_total', help: 'The total number of proxies that were started (unstable)', registers });
    this.#stopped = new Counter({ name: 'workload_manager_proxies_stopped_total', help: 'The total number of proxies that were stopped (unstable)', registers });
  }

  /** Where the gauges read their values (the workload manager, once it exists). */
  countFrom(counts: () => ProxyCounts): void {
    this.#counts = counts;
  }

  started(): void { this.#started.inc(); }
  stopped(): void { this.#stopped.inc(); }
}
