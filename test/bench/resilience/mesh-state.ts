// SPDX-License-Identifier: Apache-2.0
// Whether a daemon's state is right after a control-plane fault, from its own
// /config_dump: the workloads and services it holds are exactly what istiod
// serves (addresses too), and every certificate it holds is usable: signed by
// istiod's root, for the identity it is listed under, and not expired. Pure.
import { X509Certificate } from 'node:crypto';

interface DumpCert { pem: string; serialNumber: string; validFrom: string; expirationTime: string }

/** The parts of a /config_dump read here (ztunnel's field names). */
export interface StateDump {
  workloads?: { uid: string; workloadIps: string[] }[];
  services?: { namespace: string; hostname: string }[];
  certificates?: { identity: string; state: string; certChain: DumpCert[] }[];
}

export interface Served { workloads: ReadonlyMap<string, string>; services: ReadonlySet<string> }

/** What differs between the daemon's workloads and services and istiod's; empty when they agree. */
export function configDiff(dump: StateDump, served: Served): string[] {
  const out: string[] = [];
  const held = new Map((dump.workloads ?? []).map((w) => [w.uid, w.workloadIps.join(',')]));
  for (const [uid, ip] of served.workloads) {
    const got = held.get(uid);
    if (got === undefined) out.push(`workload ${uid} missing`);
    else if (got !== ip) out.push(`workload ${uid} at ${got}, istiod says ${ip}`);
  }
  for (const uid of held.keys()) if (!served.workloads.has(uid)) out.push(`workload ${uid} not served by istiod`);
  const services = new Set((dump.services ?? []).map((s) => `${s.namespace}/${s.hostname}`));
  for (const s of served.services) if (!services.has(s)) out.push(`service ${s} missing`);
  for (const s of services) if (!served.services.has(s)) out.push(`service ${s} not served by istiod`);
  return out;
}

/** Why a daemon's certificates are not all usable at `now`; empty when they are (and there is at least one). */
export function certificateProblems(dump: StateDump, rootPem: string, now: number): string[] {
  const certs = dump.certificates ?? [];
  if (certs.length === 0) return ['no certificates'];
  const root = new X509Certificate(rootPem);
  const out: string[] = [];
  for (const c of certs) {
    const leafDump = c.certChain[0];
    if (c.state !== 'Available' || leafDump === undefined) { out.push(`${c.identity}: ${c.state}`); continue; }
    const leaf = new X509Certificate(Buffer.from(leafDump.pem, 'base64'));
    if (!leaf.checkIssued(root) || !leaf.verify(root.publicKey)) out.push(`${c.identity}: not signed by istiod's root`);
    if (leaf.subjectAltName !== `URI:${c.identity}`) out.push(`${c.identity}: the leaf is for ${leaf.subjectAltName ?? 'nothing'}`);
    if (Date.parse(leaf.validTo) <= now || Date.parse(leaf.validFrom) > now) out.push(`${c.identity}: not valid now (${leaf.validFrom} - ${leaf.validTo})`);
  }
  return out;
}

/** Serial numbers of the leaves held, by identity. */
export function certificateSerials(dump: StateDump): Record<string, string> {
  return Object.fromEntries((dump.certificates ?? []).map((c) => [c.identity, c.certChain[0]?.serialNumber ?? '']));
}
