// SPDX-License-Identifier: Apache-2.0
// What the kernel maps should hold, from the proxy state and the pods
// enrolled on this node. Pure. A service goes into the kernel only when the
// kernel's pick would be the one decide/outbound.ts makes: no waypoint, every
// candidate a no-tunnel (TCP) workload on this network with an IPv4 address,
// and the same candidates for every enrolled pod here (locality and
// visibility can make them differ). Everything else stays in userspace, and
// `skipped` says why.
import { isIPv4 } from 'node:net';
import { authorize } from '../decide/authz.ts';
import { endpointCandidates, pickWorkloadIp } from '../decide/lb.ts';
import type { Policy } from '../state/policy.ts';
import type { WorkloadInfo } from '../inpod/protocol.ts';
import { findSourceWorkload } from '../proxy/source-workload.ts';
import type { Service } from '../state/service.ts';
import type { ProxyState } from '../state/store.ts';
import { identityOf, type Workload } from '../state/workload.ts';
import { MAX_ENDPOINTS, type KernelEndpoint, type KernelService } from './layout.ts';

export interface EnrolledPod {
  uid: string;
  info: WorkloadInfo;
  netnsCookie: bigint;
}

export interface ProjectedService {
  vip: string;
  port: number;
  service: Service;
  value: KernelService;
}

export interface LocalDestination {
  ip: string;
  podId: number;
  netnsCookie: bigint;
  workload: Workload;
}

export interface Projection {
  /** By netns cookie: the pod and its workload. */
  pods: Map<bigint, { podId: number; pod: EnrolledPod; workload: Workload | undefined }>;
  /** By "vip:port". */
  services: Map<string, ProjectedService>;
  /** Same-node fast path: enrolled pods here a local client may reach in the kernel, by IPv4. */
  locals: Map<string, LocalDestination>;
  /** Same-node fast path: "srcPodId/dstPodId" → allowed, for destinations whose policy the kernel can apply. */
  authz: Map<string, { src: number; dst: number; allowed: boolean }>;
  skipped: { service: string; reason: string }[];
}

/** Small stable ids the kernel reports back in events. */
export class IdTable<T> {
  readonly #ids = new Map<string, number>();
  readonly #values = new Map<number, T>();
  #next = 1;

  id(key: string, value: T): number {
    let id = this.#ids.get(key);
    if (id === undefined) {
      id = this.#next++;
      this.#ids.set(key, id);
    }
    this.#values.set(id, value);
    return id;
  }

  get(id: number): T | undefined {
    return this.#values.get(id);
  }

  values(): IterableIterator<T> {
    return this.#values.values();
  }

  /** Forgets what is not in `keep`. */
  retain(keep: ReadonlySet<string>): void {
    for (const [key, id] of this.#ids) {
      if (keep.has(key)) continue;
      this.#ids.delete(key);
      this.#values.delete(id);
    }
  }
}

export interface ProjectInput {
  state: ProxyState;
  nodeName: string;
  network: string;
  pods: readonly EnrolledPod[];
  podIds: IdTable<{ pod: EnrolledPod; workload: Workload | undefined }>;
  serviceIds: IdTable<{ service: Service; port: number }>;
  /** SKEIN_SAME_NODE: 'kernel' (default) or 'hbone' (same-node traffic keeps TLS). */
  sameNode?: 'kernel' | 'hbone';
}

export function project(input: ProjectInput): Projection {
  const { state, nodeName, network } = input;
  const pods: Projection['pods'] = new Map();
  const sources: Workload[] = [];
  for (const pod of input.pods) {
    const workload = findSourceWorkload(state, nodeName, pod.info);
    if (workload !== undefined) sources.push(workload);
    pods.set(pod.netnsCookie, { podId: input.podIds.id(pod.uid, { pod, workload }), pod, workload });
  }
  input.podIds.retain(new Set(input.pods.map((p) => p.uid)));
  const { locals, authz } = input.sameNode === 'hbone'
    ? { locals: new Map<string, LocalDestination>(), authz: new Map<string, { src: number; dst: number; allowed: boolean }>() }
    : sameNode(state, pods);

  const services: Projection['services'] = new Map();
  const skipped: Projection['skipped'] = [];
  const keep = new Set<string>();
  // Candidates depend on the source only through its locality: one view per distinct locality.
  const views = [...new Map(sources.map((w) => [localityKey(w), w])).values()];
  const localByUid = new Map([...locals.values()].map((l) => [l.workload.uid, l]));
  for (const service of state.services.values()) {
    const why = sourcesCannotDiffer(service, sources) ?? notKernelService(service);
    if (why !== undefined) {
      skipped.push({ service: service.hostname, reason: why });
      continue;
    }
    for (const vip of service.vips) {
      if (vip.network !== network || !isIPv4(vip.ip)) continue;
      if (state.workloads.byAddress(network, vip.ip) !== undefined || state.services.allByVip(network, vip.ip).length > 1) {
        skipped.push({ service: service.hostname, reason: `VIP ${vip.ip} is shared` });
        continue;
      }
      for (const port of service.ports.keys()) {
        const r = kernelService(state, service, vip.ip, port, views, network, localByUid);
        if ('reason' in r) {
          skipped.push({ service: `${service.hostname}:${port}`, reason: r.reason });
          continue;
        }
        const key = `${vip.ip}:${port}`;
        keep.add(key);
        const svcId = input.serviceIds.id(key, { service, port });
        services.set(key, { vip: vip.ip, port, service, value: { svcId, passthrough: r.passthrough, endpoints: r.endpoints } });
      }
    }
  }
  input.serviceIds.retain(keep);
  return { pods, services, locals, authz, skipped };
}

/**
 * A destination's policies the kernel can apply: every match names only who
 * the source is (principals, namespaces, service accounts), so the verdict
 * depends on the source pod alone and is computed here, by decide/authz.ts.
 */
function sourceOnly(policies: readonly Policy[]): boolean {
  return policies.every((p) => p.rules.every((rule) => rule.every((clause) => clause.every((m) =>
    m.sourceIps.length + m.notSourceIps.length + m.destinationIps.length + m.notDestinationIps.length
    + m.destinationPorts.length + m.notDestinationPorts.length === 0))));
}

function sameNode(state: ProxyState, pods: Projection['pods']): Pick<Projection, 'locals' | 'authz'> {
  const locals: Projection['locals'] = new Map();
  const authz: Projection['authz'] = new Map();
  for (const [netnsCookie, d] of pods) {
    const w = d.workload;
    // Waypoints and application tunnels need userspace; so does HBONE-less or IPv6-only.
    if (w === undefined || w.protocol !== 'HBONE' || w.waypoint !== undefined || w.applicationTunnel !== undefined) continue;
    const ip = w.workloadIps.find((x) => isIPv4(x));
    if (ip === undefined) continue;
    const found = state.policies.forWorkload(w.namespace, w.authorizationPolicies);
    if (found.missing.length > 0 || !sourceOnly(found.policies)) continue;
    locals.set(ip, { ip, podId: d.podId, netnsCookie, workload: w });
    for (const [, s] of pods) {
      if (s.workload === undefined) continue;
      const srcIp = s.workload.workloadIps[0] ?? '';
      const verdict = authorize(found.policies, { source: identityOf(s.workload), sourceIp: srcIp, destinationIp: ip, destinationPort: 0 });
      authz.set(`${s.podId}/${d.podId}`, { src: s.podId, dst: d.podId, allowed: verdict.allowed });
    }
  }
  return { locals, authz };
}

function notKernelService(s: Service): string | undefined {
  if (s.waypoint !== undefined || s.weightedWaypoints.length > 0) return 'has a waypoint';
  return undefined;
}

/** Visibility: a namespace-local service is seen by some pods and not others. */
function sourcesCannotDiffer(s: Service, sources: readonly Workload[]): string | undefined {
  if (s.visibility === 'Namespace' && sources.some((w) => w.namespace !== s.namespace)) return 'visible to some pods on this node only';
  return undefined;
}

/** What endpoint candidates depend on in a source (decide/lb.ts localityRank). */
function localityKey(w: Workload): string {
  return `${w.locality.region}/${w.locality.zone}/${w.locality.subzone}/${w.node}/${w.clusterId}/${w.network}`;
}

function kernelService(
  state: ProxyState, service: Service, vip: string, port: number, views: readonly Workload[], network: string,
  localByUid: ReadonlyMap<string, LocalDestination>,
): { passthrough: boolean; endpoints: KernelEndpoint[] } | { reason: string } {
  if (service.loadBalancer?.mode === 'Passthrough') return { passthrough: true, endpoints: [] };
  const first = views[0];
  if (first === undefined) return { reason: 'no enrolled pod on this node' };
  const sig = (ws: readonly { workload: Workload; targetPort: number }[]): string => ws.map((c) => `${c.workload.uid}@${c.targetPort}`).join(',');
  const candidates = endpointCandidates(state, first, service, port, 'standard');
  for (const other of views.slice(1)) {
    if (sig(endpointCandidates(state, other, service, port, 'standard')) !== sig(candidates)) return { reason: 'endpoints depend on the source pod\'s locality' };
  }
  if (candidates.length === 0) return { reason: 'no endpoint to pick' };
  if (candidates.length > MAX_ENDPOINTS) return { reason: `more than ${MAX_ENDPOINTS} endpoints` };
  const endpoints: KernelEndpoint[] = [];
  for (const c of candidates) {
    const w = c.workload;
    // An HBONE endpoint only as a same-node destination, which has a verdict for every local source.
    if (w.protocol !== 'TCP' && !localByUid.has(w.uid)) return { reason: 'an endpoint uses HBONE on another node or needs userspace' };
    if (w.waypoint !== undefined) return { reason: `endpoint ${w.name} has a waypoint` };
    if (w.network !== network) return { reason: `endpoint ${w.name} is on another network` };
    const ip = pickWorkloadIp(w, vip, service.ipFamilies);
    if (ip === undefined || !isIPv4(ip)) return { reason: `endpoint ${w.name} has no IPv4 address` };
    endpoints.push({ ip, port: c.targetPort, weight: w.capacity });
  }
  return { passthrough: false, endpoints };
}
