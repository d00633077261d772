// SPDX-License-Identifier: Apache-2.0
// Prometheus metrics with ztunnel's names (reference §8.1), in one registry
// served on :15020. Subsystems get small typed views, not the registry.
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import { CertificateMetrics } from './identity/metrics.ts';
import type { TerminationReason, XdsMetrics } from './xds/client.ts';

export class Metrics {
  readonly registry = new Registry();
  /** skein_certificate_* (ztunnel has no certificate metrics). */
  readonly certificates = new CertificateMetrics(this.registry);
  readonly #xdsMessages: Counter<'url'>;
  readonly #xdsBytes: Counter<'url'>;
  readonly #xdsTerminations: Counter<'reason'>;

  constructor(buildTag: string) {
    const registers = [this.registry];
    new Gauge({ name: 'istio_build', help: 'Istio component build info', labelNames: ['component', 'tag'], registers })
      .set({ component: 'ztunnel', tag: buildTag }, 1);
    this.#xdsMessages = new Counter({ name: 'istio_xds_message_total', help: 'Total number of xDS messages received', labelNames: ['url'], registers });
    this.#xdsBytes = new Counter({ name: 'istio_xds_message_bytes_total', help: 'Total bytes of xDS messages received', labelNames: ['url'], registers });
    this.#xdsTerminations = new Counter({ name: 'istio_xds_connection_terminations_total', help: 'Total number of xDS connection terminations', labelNames: ['reason'], registers });
    collectDefaultMetrics({ register: this.registry });
  }

  get xds(): XdsMetrics {
    return {
      message: (url, bytes) => {
        this.#xdsMessages.inc({ url });
        this.#xdsBytes.inc({ url }, bytes);
      },
      termination: (reason: TerminationReason) => { this.#xdsTerminations.inc({ reason }); },
    };
  }
}
