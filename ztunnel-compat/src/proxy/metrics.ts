// SPDX-License-Identifier: Apache-2.0
// istio_tcp_* with ztunnel's label set (reference §8.1; ztunnel
// src/proxy/metrics.rs CommonTrafficLabels), so Kiali and the Istio
// dashboards read Skein's connections like ztunnel's. Missing values are
// "unknown", as in ztunnel.
import { Counter, type Registry } from 'prom-client';
import { identityOf, type Workload } from '../state/workload.ts';
import { spiffeUri, type Identity } from '../identity/spiffe.ts';
import type { Service } from '../state/service.ts';

export const TCP_LABELS = [
  'reporter',
  'source_workload', 'source_canonical_service', 'source_canonical_revision', 'source_workload_namespace',
  'source_principal', 'source_app', 'source_version', 'source_cluster',
  'destination_service', 'destination_service_namespace', 'destination_service_name',
  'destination_workload', 'destination_canonical_service', 'destination_canonical_revision', 'destination_workload_namespace',
  'destination_principal', 'destination_app', 'destination_version', 'destination_cluster',
  'request_protocol', 'response_flags', 'connection_security_policy',
] as const;

export type TcpLabels = Record<(typeof TCP_LABELS)[number], string>;

export type ResponseFlag = '-' | 'DENY' | 'CONNECT' | 'TLS_FAILURE' | 'H2_HANDSHAKE_FAILURE' | 'NETWORK_POLICY' | 'IDENTITY_ERROR';

export interface ConnectionFacts {
  reporter: 'source' | 'destination';
  source: Workload | undefined;
  /** The mTLS peer identity (destination reporter), or the source's own (source reporter). */
  sourceIdentity: Identity | undefined;
  destination: Workload | undefined;
  destinationService: Service | undefined;
  mtls: boolean;
  flag: ResponseFlag;
}

const unknown = (v: string | undefined): string => (v === undefined || v === '' ? 'unknown' : v);

export function tcpLabels(f: ConnectionFacts): TcpLabels {
  const s = f.source;
  const d = f.destination;
  const svc = f.destinationService;
  const sName = s?.canonicalName || s?.workloadName || s?.name;
  const dName = d?.canonicalName || d?.workloadName || d?.name;
  return {
    reporter: f.reporter,
    source_workload: unknown(s?.workloadName || s?.name),
    source_canonical_service: unknown(sName),
    source_canonical_revision: unknown(s?.canonicalRevision || 'latest'),
    source_workload_namespace: unknown(s?.namespace),
    source_principal: f.sourceIdentity === undefined ? 'unknown' : spiffeUri(f.sourceIdentity),
    source_app: unknown(sName),
    source_version: unknown(s?.canonicalRevision || 'latest'),
    source_cluster: unknown(s?.clusterId),
    destination_service: unknown(svc?.hostname),
    destination_service_namespace: unknown(svc?.namespace),
    destination_service_name: unknown(svc?.name),
    destination_workload: unknown(d?.workloadName || d?.name),
    destination_canonical_service: unknown(dName),
    destination_canonical_revision: unknown(d === undefined ? undefined : d.canonicalRevision || 'latest'),
    destination_workload_namespace: unknown(d?.namespace),
    destination_principal: d === undefined ? 'unknown' : spiffeUri(identityOf(d)),
    destination_app: unknown(dName),
    destination_version: unknown(d === undefined ? undefined : d.canonicalRevision || 'latest'),
    destination_cluster: unknown(d?.clusterId),
    request_protocol: 'tcp',
    response_flags: f.flag,
    connection_security_policy: f.mtls ? 'mutual_tls' : 'unknown',
  };
}

export class TcpMetrics {
  readonly #opened: Counter<(typeof TCP_LABELS)[number]>;
  readonly #closed: Counter<(typeof TCP_LABELS)[number]>;
  readonly #failed: Counter<(typeof TCP_LABELS)[number]>;
  readonly #sent: Counter<(typeof TCP_LABELS)[number]>;
  readonly #received: Counter<(typeof TCP_LABELS)[number]>;

  constructor(registry: Registry) {
    const registers = [registry];
    const labelNames = TCP_LABELS;
    this.#opened = new Counter({ name: 'istio_tcp_connections_opened_total', help: 'The total number of TCP connections opened', labelNames, registers });
    this.#closed = new Counter({ name: 'istio_tcp_connections_closed_total', help: 'The total number of TCP connections closed', labelNames, registers });
    this.#failed = new Counter({ name: 'istio_tcp_connections_failed_total', help: 'The total number of TCP connections that failed to establish (unstable)', labelNames, registers });
    this.#sent = new Counter({ name: 'istio_tcp_sent_bytes_total', help: 'The size of total bytes sent during response in case of a TCP connection', labelNames, registers });
    this.#received = new Counter({ name: 'istio_tcp_received_bytes_total', help: 'The size of total bytes received during request in case of a TCP connection', labelNames, registers });
  }

  opened(l: TcpLabels): void {
    this.#opened.inc(l);
  }

  /** `received`: request bytes (client → server); `sent`: response bytes. */
  closed(l: TcpLabels, received: number, sent: number): void {
    this.#closed.inc(l);
    if (received > 0) this.#received.inc(l, received);
    if (sent > 0) this.#sent.inc(l, sent);
  }

  failed(l: TcpLabels): void {
    this.#failed.inc(l);
  }
}
