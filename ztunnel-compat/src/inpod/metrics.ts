// SPDX-License-Identifier: Apache-2.0
// ztunnel's in-pod workload manager metrics (its inpod/metrics.rs): how many
// pods have a running proxy, how many are waiting for one, and how many
// proxies were started and stopped.
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
      name: 'istio_inpod_active_proxy_count', help: 'The total number current workloads with active inpod proxies', registers,
      collect() { this.set(counts().running); },
    });
    new Gauge({
      name: 'istio_inpod_pending_proxy_count', help: 'The total number current workloads with pending inpod proxies', registers,
      collect() { this.set(counts().pending); },
    });
    this.#started = new Counter({ name: 'istio_inpod_proxies_started_total', help: 'The total number of inpod proxies started', registers });
    this.#stopped = new Counter({ name: 'istio_inpod_proxies_stopped_total', help: 'The total number of inpod proxies stopped', registers });
  }

  /** Where the gauges read their values (the workload manager, once it exists). */
  countFrom(counts: () => ProxyCounts): void {
    this.#counts = counts;
  }

  started(): void { this.#started.inc(); }
  stopped(): void { this.#stopped.inc(); }
}
