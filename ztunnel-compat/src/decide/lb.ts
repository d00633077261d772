// SPDX-License-Identifier: Apache-2.0
// Endpoint selection for a service (reference §5.4 step 4, §5.7): which
// endpoint, which target port, which of the workload's IPs. Pure and
// synchronous; randomness is passed in so tests can pin every pick. Follows
// ztunnel `ProxyState::load_balance` / `find_upstream_from_service` /
// `pick_workload_destination`.
import type { ProxyState } from '../state/store.ts';
import { selectableEndpoints, type Endpoint, type IpFamily, type LoadBalancerScope, type Service } from '../state/service.ts';
import type { Workload } from '../state/workload.ts';

/**
 * 'standard': a client dialled the service port. 'waypoint': we look up the
 * waypoint service's HBONE port, which endpoints with an application tunnel
 * may serve without declaring it (ztunnel `ServiceResolutionMode`).
 */
export type ResolutionMode = 'standard' | 'waypoint';

export interface EndpointPick {
  readonly endpoint: Endpoint;
  readonly workload: Workload;
  readonly targetPort: number;
}

/**
 * Index of a weighted random pick, or undefined when no weight is positive
 * (rand's `choose_weighted` fails on a zero total, so weight 0 is never picked).
 */
export function weightedIndex(weights: readonly number[], random: () => number): number | undefined {
  let total = 0;
  for (const w of weights) if (w > 0) total += w;
  if (total <= 0) return undefined;
  const r = random() * total;
  let acc = 0;
  let last: number | undefined;
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i] ?? 0;
    if (w <= 0) continue;
    acc += w;
    last = i;
    if (r < acc) return i;
  }
  // Only reachable through float rounding at r ≈ total.
  return last;
}

function scopeMatches(scope: LoadBalancerScope, src: Workload, dst: Workload): boolean {
  switch (scope) {
    case 'Region': return src.locality.region === dst.locality.region;
    case 'Zone': return src.locality.zone === dst.locality.zone;
    case 'Subzone': return src.locality.subzone === dst.locality.subzone;
    case 'Node': return src.node === dst.node;
    case 'Cluster': return src.clusterId === dst.clusterId;
    case 'Network': return src.network === dst.network;
  }
}

/**
 * The locality tier of `dst` seen from `src`: how many leading preferences
 * match (ztunnel counts until the first mismatch), or undefined when STRICT
 * excludes it. Under STRICT a leading NETWORK scope only ranks: istiod puts it
 * first to prefer the local network without forbidding remote ones.
 */
export function localityRank(
  prefs: readonly LoadBalancerScope[], strict: boolean, src: Workload, dst: Workload,
): number | undefined {
  let rank = 0;
  while (rank < prefs.length) {
    const s = prefs[rank];
    if (s === undefined || !scopeMatches(s, src, dst)) break;
    rank++;
  }
  if (strict && rank < prefs.length) {
    const required = prefs[0] === 'Network' ? prefs.slice(1) : prefs;
    if (!required.every((s) => scopeMatches(s, src, dst))) return undefined;
  }
  return rank;
}

/**
 * ztunnel `find_upstream_from_service` for one service port, before the pick:
 * the selectable endpoints (health policy) that can serve the port, narrowed
 * to the best locality tier seen from `source`. The kernel projection
 * (accel/project.ts) uses the same list, so both paths choose alike.
 */
export function endpointCandidates(
  state: ProxyState, source: Workload, service: Service, servicePort: number, mode: ResolutionMode,
): EndpointPick[] {
  const svcTarget = service.ports.get(servicePort);
  if (mode === 'standard' && svcTarget === undefined) return [];
  const lb = service.loadBalancer;
  const prefs = lb?.routingPreferences ?? [];
  const strict = lb?.mode === 'Strict';
  const candidates: EndpointPick[] = [];
  const ranks: number[] = [];
  let top = -1;
  for (const ep of selectableEndpoints(service)) {
    const workload = state.workloads.byUid(ep.workloadUid);
    if (workload === undefined) continue;
    const targetPort = targetPortFor(ep, workload, servicePort, svcTarget, mode);
    if (targetPort === undefined) continue;
    const rank = localityRank(prefs, strict, source, workload);
    if (rank === undefined) continue;
    candidates.push({ endpoint: ep, workload, targetPort });
    ranks.push(rank);
    if (rank > top) top = rank;
  }
  // FAILOVER (and STANDARD with preferences): only the best tier present competes.
  return candidates.filter((_, i) => ranks[i] === top);
}

/**
 * The candidates, then a capacity-weighted random pick. Undefined when the
 * service does not declare the port (standard mode) or nothing is left.
 */
export function pickEndpoint(
  state: ProxyState, source: Workload, service: Service, servicePort: number, mode: ResolutionMode, random: () => number,
): EndpointPick | undefined {
  const tier = endpointCandidates(state, source, service, servicePort, mode);
  const i = weightedIndex(tier.map((c) => c.workload.capacity), random);
  return i === undefined ? undefined : tier[i];
}

/**
 * The endpoint's own mapping (named ports) wins, then a non-zero service
 * target port. A waypoint endpoint without either is kept only with an
 * application tunnel, and is dialled on the HBONE port itself.
 */
function targetPortFor(
  ep: Endpoint, w: Workload, servicePort: number, svcTarget: number | undefined, mode: ResolutionMode,
): number | undefined {
  const own = ep.port[servicePort];
  if (own !== undefined && own !== 0) return own;
  if (svcTarget !== undefined && svcTarget !== 0) return svcTarget;
  if (mode === 'waypoint' && w.applicationTunnel !== undefined) return servicePort;
  return undefined;
}

function isV6(ip: string): boolean {
  return ip.includes(':');
}

function familyAccepts(family: IpFamily | undefined, ip: string): boolean {
  if (family === 'IPv4') return !isV6(ip);
  if (family === 'IPv6') return isV6(ip);
  return true;
}

/**
 * ztunnel `pick_workload_destination`: the IP the client dialled if it is the
 * workload's; else, among IPs the service's ip_families allow, one of the
 * request's family, else the first allowed. Undefined: none fits (a
 * hostname-only workload would need DNS).
 */
export function pickWorkloadIp(w: Workload, requestIp: string, family: IpFamily | undefined): string | undefined {
  if (w.workloadIps.includes(requestIp)) return requestIp;
  const allowed = w.workloadIps.filter((ip) => familyAccepts(family, ip));
  return allowed.find((ip) => isV6(ip) === isV6(requestIp)) ?? allowed[0];
}

/**
 * ztunnel `resolve_on_demand_dns`'s pick among a hostname's addresses: one at
 * random, of the family the client dialled when there is one. Undefined: none.
 */
export function pickResolvedIp(v4: readonly string[], v6: readonly string[], requestIp: string, random: () => number): string | undefined {
  const [same, other] = isV6(requestIp) ? [v6, v4] : [v4, v6];
  const from = same.length > 0 ? same : other;
  return from[Math.floor(random() * from.length)];
}
