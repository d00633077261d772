// SPDX-License-Identifier: Apache-2.0
// The kernel maps' layouts, mirrored from bpf/include/skein_maps.h (the one
// declaration; layout.test.ts compiles it and checks every number here) and
// the encoders between them and the daemon's values. Pure.
//
// Addresses and ports are stored in network byte order, as cgroup/connect4
// sees them; everything else in the host's order (little-endian: the
// programs are built for x86-64).
import { isIPv4 } from 'node:net';

export const MAPS = {
  pods: 'skein_pods',
  services: 'skein_services',
  local: 'skein_local',
  authz: 'skein_authz',
  flows: 'skein_flows',
  approved: 'skein_approved',
  listeners: 'skein_listeners',
  events: 'skein_events',
  stats: 'skein_stats',
  appPort: 'skein_app_port',
} as const;

export const PROGRAMS = {
  connect4: 'skein_connect4',
  sockops: 'skein_sockops',
  sockRelease: 'skein_sock_release',
  getpeername4: 'skein_getpeername4',
  getsockname4: 'skein_getsockname4',
  skLookup: 'skein_sk_lookup',
  learnListeners: 'skein_learn_listeners',
} as const;

export const INPOD_MARK = 0x539;
export const MAX_PODS = 4096;
export const MAX_SERVICES = 8192;
export const MAX_ENDPOINTS = 32;
export const MAX_LOCAL = 4096;
export const MAX_AUTHZ = 65536;
export const AUTHZ = { allow: 1, deny: 2 } as const;
export const SVC_PASSTHROUGH = 0x1;

/** Byte offsets and sizes; each struct's `size` last. */
export const LAYOUT = {
  skein_pod: { pod_id: 0, flags: 4, size: 8 },
  skein_local: { netns_cookie: 0, pod_id: 8, flags: 12, size: 16 },
  skein_authz_key: { src_pod: 0, dst_pod: 4, size: 8 },
  skein_flow_key: { ip: 0, port: 4, dst_ip: 8, size: 12 },
  skein_approval: { dst_netns: 0, dst_port: 8, admitted: 12, size: 16 },
  skein_listen_key: { netns_cookie: 0, port: 8, pad: 12, size: 16 },
  skein_svc_key: { vip: 0, port: 4, pad: 6, size: 8 },
  skein_endpoint: { ip: 0, port: 4, pad: 6, weight: 8, size: 12 },
  skein_service: { svc_id: 0, count: 4, flags: 6, total_weight: 8, pad: 12, eps: 16, size: 16 + MAX_ENDPOINTS * 12 },
  skein_flow: {
    start_ns: 0, pod_id: 8, svc_id: 12, orig_ip: 16, dst_ip: 20, orig_port: 24, dst_port: 26, established: 28, dst_netns: 32, dst_pod: 40, pad: 44, size: 48,
  },
  skein_event: {
    kind: 0, pod_id: 4, svc_id: 8, src_ip: 12, orig_ip: 16, dst_ip: 20, src_port: 24, orig_port: 26, dst_port: 28, pad: 30,
    cookie: 32, bytes_sent: 40, bytes_recv: 48, duration_ns: 56, dst_pod: 64, pad2: 68, size: 72,
  },
} as const;

export const EVENT = { open: 1, close: 2, fail: 3 } as const;

export const STAT = {
  lbRewrite: 0, passthrough: 1, flowsFull: 2, eventsLost: 3, noEndpoint: 4, sameNode: 5, denied: 6, admitted: 7, noListener: 8, otherFlow: 9, max: 16,
} as const;

export class LayoutError extends Error {
  override name = 'LayoutError';
}

function ipv4(ip: string): Buffer {
  if (!isIPv4(ip)) throw new LayoutError(`not an IPv4 address: ${ip}`);
  return Buffer.from(ip.split('.').map(Number));
}

function ipv4At(b: Buffer, off: number): string {
  return `${b[off] ?? 0}.${b[off + 1] ?? 0}.${b[off + 2] ?? 0}.${b[off + 3] ?? 0}`;
}

export function podKey(netnsCookie: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(netnsCookie);
  return b;
}

export function podValue(podId: number): Buffer {
  const L = LAYOUT.skein_pod;
  const b = Buffer.alloc(L.size);
  b.writeUInt32LE(podId, L.pod_id);
  return b;
}

export function localKey(ip: string): Buffer {
  return ipv4(ip);
}

export function localValue(netnsCookie: bigint, podId: number): Buffer {
  const L = LAYOUT.skein_local;
  const b = Buffer.alloc(L.size);
  b.writeBigUInt64LE(netnsCookie, L.netns_cookie);
  b.writeUInt32LE(podId, L.pod_id);
  return b;
}

export function authzKey(srcPod: number, dstPod: number): Buffer {
  const L = LAYOUT.skein_authz_key;
  const b = Buffer.alloc(L.size);
  b.writeUInt32LE(srcPod, L.src_pod);
  b.writeUInt32LE(dstPod, L.dst_pod);
  return b;
}

export function authzValue(allowed: boolean): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(allowed ? AUTHZ.allow : AUTHZ.deny);
  return b;
}

export function serviceKey(vip: string, port: number): Buffer {
  const L = LAYOUT.skein_svc_key;
  const b = Buffer.alloc(L.size);
  ipv4(vip).copy(b, L.vip);
  b.writeUInt16BE(port, L.port);
  return b;
}

export interface KernelEndpoint {
  ip: string;
  port: number;
  weight: number;
}

export interface KernelService {
  svcId: number;
  passthrough: boolean;
  endpoints: readonly KernelEndpoint[];
}

export function serviceValue(s: KernelService): Buffer {
  const L = LAYOUT.skein_service;
  const E = LAYOUT.skein_endpoint;
  if (s.endpoints.length > MAX_ENDPOINTS) throw new LayoutError(`${s.endpoints.length} endpoints; the kernel map holds ${MAX_ENDPOINTS}`);
  const b = Buffer.alloc(L.size);
  b.writeUInt32LE(s.svcId, L.svc_id);
  b.writeUInt16LE(s.endpoints.length, L.count);
  b.writeUInt16LE(s.passthrough ? SVC_PASSTHROUGH : 0, L.flags);
  let total = 0;
  for (const [i, ep] of s.endpoints.entries()) {
    const at = L.eps + i * E.size;
    ipv4(ep.ip).copy(b, at + E.ip);
    b.writeUInt16BE(ep.port, at + E.port);
    b.writeUInt32LE(ep.weight, at + E.weight);
    total += ep.weight;
  }
  if (total > 0xffffffff) throw new LayoutError('total endpoint weight overflows 32 bits');
  b.writeUInt32LE(total, L.total_weight);
  return b;
}

/** An open same-node flow the kernel approved (skein_approved: key and value). */
export interface Approval {
  clientIp: string;
  clientPort: number;
  /** The destination pod's address. */
  dstIp: string;
  dstNetns: bigint;
  /** The port the client dialled. */
  dstPort: number;
}

export function decodeApproval(key: Buffer, value: Buffer): Approval {
  const K = LAYOUT.skein_flow_key;
  const V = LAYOUT.skein_approval;
  if (key.length < K.size || value.length < V.size) throw new LayoutError(`approval of ${key.length}+${value.length} bytes, expected ${K.size}+${V.size}`);
  return {
    clientIp: ipv4At(key, K.ip),
    clientPort: key.readUInt32LE(K.port),
    dstIp: ipv4At(key, K.dst_ip),
    dstNetns: value.readBigUInt64LE(V.dst_netns),
    dstPort: value.readUInt32LE(V.dst_port),
  };
}

export interface KernelEvent {
  kind: 'open' | 'close' | 'fail';
  podId: number;
  svcId: number;
  src: { ip: string; port: number };
  /** What the app dialled. */
  orig: { ip: string; port: number };
  /** Where the kernel sent it. */
  dst: { ip: string; port: number };
  cookie: bigint;
  bytesSent: number;
  bytesRecv: number;
  durationMs: number;
  /** Same-node flows: the destination pod's id; else 0. */
  dstPodId: number;
}

export function decodeEvent(b: Buffer): KernelEvent {
  const L = LAYOUT.skein_event;
  if (b.length < L.size) throw new LayoutError(`event of ${b.length} bytes, expected ${L.size}`);
  const kinds: Record<number, KernelEvent['kind']> = { [EVENT.open]: 'open', [EVENT.close]: 'close', [EVENT.fail]: 'fail' };
  const kind = kinds[b.readUInt32LE(L.kind)];
  if (kind === undefined) throw new LayoutError(`unknown event kind ${b.readUInt32LE(L.kind)}`);
  return {
    kind,
    podId: b.readUInt32LE(L.pod_id),
    svcId: b.readUInt32LE(L.svc_id),
    src: { ip: ipv4At(b, L.src_ip), port: b.readUInt16LE(L.src_port) },
    orig: { ip: ipv4At(b, L.orig_ip), port: b.readUInt16BE(L.orig_port) },
    dst: { ip: ipv4At(b, L.dst_ip), port: b.readUInt16BE(L.dst_port) },
    cookie: b.readBigUInt64LE(L.cookie),
    bytesSent: Number(b.readBigUInt64LE(L.bytes_sent)),
    bytesRecv: Number(b.readBigUInt64LE(L.bytes_recv)),
    durationMs: Number(b.readBigUInt64LE(L.duration_ns) / 1_000_000n),
    dstPodId: b.readUInt32LE(L.dst_pod),
  };
}
