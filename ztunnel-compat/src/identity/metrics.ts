// SPDX-License-Identifier: Apache-2.0
// Certificate lifecycle metrics. ztunnel exports none for certificates (its
// src/identity/manager.rs only logs), so these are Skein's own, prefixed
// `skein_`: fetches by result, so a refusing or absent CA shows on a
// dashboard, and connections refused because no valid certificate was there
// to present (fail closed instead of serving an expired one).
import { Counter, type Registry } from 'prom-client';
import type { SecretManagerMetrics } from './manager.ts';

export type CertificateDirection = 'inbound' | 'outbound';
/** `expired`: the last certificate ran out and no new one came; `unavailable`: there never was one. */
export type RefusalReason = 'expired' | 'unavailable';

export class CertificateMetrics implements SecretManagerMetrics {
  readonly #fetches: Counter<'result'>;
  readonly #refusals: Counter<'direction' | 'reason'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.#fetches = new Counter({
      name: 'skein_certificate_fetches_total',
      help: 'Certificate fetches from the CA by result: ok, or the failure (ca_rpc, ca_connect, san_mismatch, cert_expired, ...)',
      labelNames: ['result'], registers,
    });
    this.#refusals = new Counter({
      name: 'skein_certificate_refusals_total',
      help: 'Connections refused because no valid certificate could be presented (never an expired one)',
      labelNames: ['direction', 'reason'], registers,
    });
  }

  fetched(result: string): void {
    this.#fetches.inc({ result });
  }

  refused(direction: CertificateDirection, reason: RefusalReason): void {
    this.#refusals.inc({ direction, reason });
  }
}
