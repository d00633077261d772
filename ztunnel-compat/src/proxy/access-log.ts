// SPDX-License-Identifier: Apache-2.0
// Access-log fields as ztunnel writes them (reference §8.4, target `access`),
// so log pipelines parse Skein's lines like ztunnel's: `dst.addr` is the L4
// address dialled (ip:15008 for HBONE), `dst.hbone_addr` the CONNECT target,
// `src.identity` only when the peer was authenticated by mTLS.
import { spiffeUri, type Identity } from '../identity/spiffe.ts';
import type { Logger } from '../log.ts';
import type { Service } from '../state/service.ts';
import { identityOf, type Workload } from '../state/workload.ts';

export interface AccessFacts {
  direction: 'inbound' | 'outbound';
  srcAddr: string;
  source: Workload | undefined;
  /** The mTLS-authenticated source identity; undefined for plaintext. */
  srcIdentity: Identity | undefined;
  dstAddr: string;
  hboneAddr?: string | undefined;
  destination: Workload | undefined;
  service: Service | undefined;
}

export type AccessFields = Record<string, string | number>;

// A module-level helper, not a closure per connection.
function put(out: AccessFields, k: string, v: string | undefined): void {
  if (v !== undefined && v !== '') out[k] = v;
}

/** The fields that name a connection; absent facts are left out, not "unknown". */
export function accessFields(f: AccessFacts): AccessFields {
  const out: AccessFields = {};
  put(out, 'src.addr', f.srcAddr);
  put(out, 'src.workload', f.source?.name);
  put(out, 'src.namespace', f.source?.namespace);
  put(out, 'src.identity', f.srcIdentity === undefined ? undefined : spiffeUri(f.srcIdentity));
  put(out, 'src.cluster', f.source?.clusterId);
  put(out, 'dst.addr', f.dstAddr);
  put(out, 'dst.hbone_addr', f.hboneAddr);
  put(out, 'dst.service', f.service?.hostname);
  put(out, 'dst.workload', f.destination?.name);
  put(out, 'dst.namespace', f.destination?.namespace);
  put(out, 'dst.identity', f.destination === undefined ? undefined : spiffeUri(identityOf(f.destination)));
  put(out, 'dst.cluster', f.destination?.clusterId);
  out.direction = f.direction;
  return out;
}

export interface Completion {
  bytesSent: number;
  bytesRecv: number;
  durationMs: number;
  error?: string | undefined;
}

/**
 * `connection complete`: INFO, or ERROR with `error=` when the connection
 * ended badly. The line is built only when its level is on (the access scope
 * may be set above info, at start or through /logging): otherwise it would be
 * an object per connection for nothing.
 */
export function logComplete(log: Logger, fields: AccessFields, c: Completion): void {
  const level = c.error === undefined ? 'info' : 'error';
  if (!log.isLevelEnabled(level)) return;
  const line = { ...fields, bytes_sent: c.bytesSent, bytes_recv: c.bytesRecv, duration: `${c.durationMs}ms` };
  if (c.error === undefined) log.info(line, 'connection complete');
  else log.error({ ...line, error: c.error }, 'connection complete');
}

/** `connection failed`: WARN, for connections refused or failed before any byte moved (built only when WARN is on). */
export function logFailed(log: Logger, fields: AccessFields, error: string): void {
  if (!log.isLevelEnabled('warn')) return;
  log.warn({ ...fields, error }, 'connection failed');
}

/**
 * The error of an access-log line for an RBAC denial, with ztunnel's wording
 * (src/proxy.rs Error::AuthorizationPolicyRejection), e.g.
 * "connection closed due to policy rejection: explicitly denied by: ns/name".
 */
export function policyRejection(reason: string): string {
  return `connection closed due to policy rejection: ${reason}`;
}
