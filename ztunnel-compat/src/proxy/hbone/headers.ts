// SPDX-License-Identifier: Apache-2.0
// The request headers ztunnel puts on an HBONE CONNECT (create_hbone_request,
// src/baggage.rs): baggage, forwarded and a random W3C traceparent.
import { randomFillSync } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http2';
import type { Workload } from '../../state/workload.ts';

/** What the baggage header describes; empty or missing parts are left out. */
export interface BaggageFields {
  clusterId?: string;
  namespace?: string;
  /** deployment, cronjob, pod or job (lower-cased here). */
  workloadType?: string;
  workloadName?: string;
  canonicalName?: string;
  canonicalRevision?: string;
  region?: string;
  zone?: string;
}

/** `k8s.cluster.name=..,k8s.namespace.name=..,k8s.<type>.name=..,service.name=..,service.version=..,cloud.region=..,cloud.availability_zone=..` */
export function baggageHeader(f: BaggageFields): string {
  const parts: string[] = [];
  const add = (k: string, v: string | undefined): void => {
    if (v !== undefined && v !== '') parts.push(`${k}=${v}`);
  };
  add('k8s.cluster.name', f.clusterId);
  add('k8s.namespace.name', f.namespace);
  if (f.workloadType !== undefined && f.workloadType !== '') add(`k8s.${f.workloadType.toLowerCase()}.name`, f.workloadName);
  add('service.name', f.canonicalName);
  add('service.version', f.canonicalRevision);
  add('cloud.region', f.region);
  add('cloud.availability_zone', f.zone);
  return parts.join(',');
}

const baggageOf = new WeakMap<Workload, { clusterId: string; baggage: string }>();

/**
 * The baggage a source workload's connections carry: the cluster is this
 * node's CLUSTER_ID (ztunnel's config cluster_id), not the workload's; the
 * region and zone are the workload's locality.
 */
export function sourceBaggage(source: Workload, clusterId: string): string {
  // Per workload object (replaced, never changed, on an update): built once, not per connection.
  const known = baggageOf.get(source);
  if (known !== undefined && known.clusterId === clusterId) return known.baggage;
  const baggage = baggageHeader({
    clusterId, namespace: source.namespace, workloadType: source.workloadType, workloadName: source.workloadName || source.name,
    canonicalName: source.canonicalName, canonicalRevision: source.canonicalRevision, region: source.locality.region, zone: source.locality.zone,
  });
  baggageOf.set(source, { clusterId, baggage });
  return baggage;
}

/** The `host=` of a request's `Forwarded` header (the service the client addressed), if any. */
export function forwardedHost(headers: IncomingHttpHeaders): string | undefined {
  const v = headers.forwarded;
  const raw = Array.isArray(v) ? v.join(',') : v;
  if (raw === undefined) return undefined;
  for (const part of raw.split(/[;,]/)) {
    const [k, val] = part.trim().split('=', 2);
    if (k?.toLowerCase() !== 'host' || val === undefined) continue;
    // Empty once unquoted (`host=""`, a lone `"`) names no service.
    const host = val.replace(/^"|"$/g, '');
    if (host !== '') return host;
  }
  return undefined;
}

/**
 * `for="ip:port"` (IPv6 bracketed, as a Rust SocketAddr prints), plus
 * `;host=<service>` when service-addressed. `clientIp` is an address the
 * kernel reported, so a colon tells IPv6 (isIPv6's regex cost a microsecond
 * per connection).
 */
export function forwardedHeader(clientIp: string, clientPort: number, host?: string): string {
  const addr = clientIp.includes(':') ? `[${clientIp}]:${clientPort}` : `${clientIp}:${clientPort}`;
  return host === undefined || host === '' ? `for="${addr}"` : `for="${addr}";host=${host}`;
}

// Random bytes for traceparents, drawn 24 at a time (16 trace id + 8 span
// id) from a pool refilled once per 170 connections: one randomFillSync per
// connection was a few percent of a connection churn's main thread. The
// pool is made hex once per refill too; a connection takes two slices.
const TRACE_IDS = 24;
const tracePool = Buffer.alloc(TRACE_IDS * 170);
let traceHex = '';
let traceNext = tracePool.length;

function allZero(b: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (b[i] !== 0) return false;
  return true;
}

/** `00-<32 hex trace id>-<16 hex span id>-00`, random per connection (never the all-zero ids). */
export function traceparent(): string {
  let at: number;
  do {
    if (traceNext >= tracePool.length) {
      randomFillSync(tracePool);
      traceHex = tracePool.toString('hex');
      traceNext = 0;
    }
    at = traceNext;
    traceNext += TRACE_IDS;
  } while (allZero(tracePool, at, at + 16) || allZero(tracePool, at + 16, at + TRACE_IDS));
  return `00-${traceHex.slice(2 * at, 2 * (at + 16))}-${traceHex.slice(2 * (at + 16), 2 * (at + TRACE_IDS))}-00`;
}
