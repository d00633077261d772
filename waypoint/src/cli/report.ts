// SPDX-License-Identifier: Apache-2.0
// How `list` and `status` show Gateways: pure formatting of what the API
// server returned (status conditions and addresses as Gateway API defines them).
import type { KubernetesObject } from '@kubernetes/client-node';
import { ANNOTATION_INBOUND_BINDING, LABEL_WAYPOINT_FOR, WAYPOINT_CLASS } from '../manifest/constants.ts';

interface GatewayView {
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: { gatewayClassName?: string };
  status?: {
    conditions?: { type?: string; status?: string; reason?: string; message?: string }[];
    addresses?: { type?: string; value?: string }[];
  };
}

/** A Gateway is a waypoint to Skein when istiod's waypoint class runs it or it carries the inbound binding. */
export function isWaypoint(obj: KubernetesObject): boolean {
  const gw = obj as GatewayView;
  return gw.spec?.gatewayClassName === WAYPOINT_CLASS || gw.metadata?.annotations?.[ANNOTATION_INBOUND_BINDING] !== undefined;
}

export function formatList(gateways: readonly KubernetesObject[]): string {
  const rows = [['NAMESPACE', 'NAME', 'CLASS', 'FOR', 'BINDING', 'PROGRAMMED', 'ADDRESS']];
  for (const obj of gateways) {
    const gw = obj as GatewayView;
    rows.push([
      gw.metadata?.namespace ?? '',
      gw.metadata?.name ?? '',
      gw.spec?.gatewayClassName ?? '',
      gw.metadata?.labels?.[LABEL_WAYPOINT_FOR] ?? 'service',
      gw.metadata?.annotations?.[ANNOTATION_INBOUND_BINDING] ?? 'HBONE',
      programmed(gw).status,
      (gw.status?.addresses ?? []).map((a) => a.value ?? '').join(',') || '-',
    ]);
  }
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ')).join('\n') + '\n';
}

export function formatStatus(obj: KubernetesObject): string {
  const gw = obj as GatewayView;
  const p = programmed(gw);
  const lines = [
    `Gateway ${gw.metadata?.namespace ?? ''}/${gw.metadata?.name ?? ''} (class ${gw.spec?.gatewayClassName ?? '?'})`,
    `Programmed: ${p.status}${p.reason === '' ? '' : ` (${p.reason})`}${p.message === '' ? '' : `: ${p.message}`}`,
  ];
  const addresses = gw.status?.addresses ?? [];
  lines.push(addresses.length === 0 ? 'Addresses: none' : `Addresses: ${addresses.map((a) => `${a.value ?? ''} (${a.type ?? 'IPAddress'})`).join(', ')}`);
  return lines.join('\n') + '\n';
}

/** True when the Gateway reports Programmed=True. */
export function isProgrammed(obj: KubernetesObject): boolean {
  return programmed(obj).status === 'True';
}

function programmed(gw: GatewayView): { status: string; reason: string; message: string } {
  const c = gw.status?.conditions?.find((x) => x.type === 'Programmed');
  if (c === undefined) return { status: 'Unknown', reason: 'no Programmed condition yet', message: '' };
  return { status: c.status ?? 'Unknown', reason: c.reason ?? '', message: c.message ?? '' };
}
