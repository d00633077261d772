// SPDX-License-Identifier: Apache-2.0
// The outbound routing decision (reference §5.4, §5.7; ztunnel
// `OutboundConnection::build_request`): given state and one captured
// connection, say where it goes and how, as a value the proxy (and the kernel
// projection) then acts on. Pure and synchronous: no sockets, no DNS, no
// clock; randomness comes in through `OutboundFacts.random`.
//
// Not done here: an endpoint known only by hostname (a ServiceEntry with DNS
// resolution) comes back as 'resolve', for the caller to look the name up
// (on-demand DNS is I/O) and finish with decideResolved. Returned as
// 'unsupported': double HBONE (§5.5, a destination or waypoint on another
// network). `PREFERED_SERVICE_NAMESPACE` is not part of the VIP tie-break:
// ServiceView.byVip does not take it.
import { identityKey, parseSpiffe, spiffeUri, type Identity } from '../identity/spiffe.ts';
import type { GatewayAddress } from '../state/address.ts';
import { bestService } from '../state/service-index.ts';
import { endpointSelectable, visibleTo, type Service } from '../state/service.ts';
import type { ProxyState } from '../state/store.ts';
import { identityOf, type Workload } from '../state/workload.ts';
import { pickEndpoint, pickWorkloadIp, weightedIndex } from './lb.ts';

export interface OutboundFacts {
  /** The source workload (already found by the caller from ZDS info + WDS). */
  source: Workload;
  /** SO_ORIGINAL_DST of the captured connection. */
  originalDst: { ip: string; port: number };
  /** Source IP of the captured connection (the pod IP). */
  sourceIp: string;
  /** NETWORK of this node. */
  network: string;
  /** Random source in [0,1) for weighted picks (injectable for tests). */
  random: () => number;
  /**
   * TRANSPARENT_NETWORK_POLICIES (istio/ztunnel#1665): HBONE straight to a
   * workload dials its target port instead of 15008, so a network policy
   * engine (Calico) sees the app's port; the CNI steers it to 15008.
   */
  transparentNetworkPolicies?: boolean;
}

export interface SocketAddr {
  readonly ip: string;
  readonly port: number;
}

export type OutboundDecision =
  /** §5.4.1: the pod dialled one of our own ports on loopback; close it. */
  | { kind: 'drop'; reason: 'self-call' }
  /** Plain TCP to the original destination: not a mesh destination, or LB mode PASSTHROUGH. */
  | { kind: 'passthrough'; upstream: SocketAddr; reason: string }
  /** Destination protocol NONE: plain TCP to the chosen workload IP and target port. */
  | { kind: 'tcp'; upstream: SocketAddr; destination: Workload; service?: Service }
  | {
    kind: 'hbone';
    /** What the TCP connection dials: `ip:15008` (the target port under TRANSPARENT_NETWORK_POLICIES), or the waypoint's. */
    upstream: SocketAddr;
    /** The CONNECT `:authority`: "ip:port" or "[v6]:port". */
    authority: string;
    /** The peer certificate must carry one of these SPIFFE identities. */
    expectedIdentities: Identity[];
    /** The final workload when known (undefined when a service waypoint picks it). */
    destination?: Workload;
    /** The service the client addressed, if it addressed one. */
    service?: Service;
    /** The waypoint workload the connection goes through, if any. */
    waypoint?: Workload;
    /** §5.3 pool key: connections with the same key share an HTTP/2 connection. */
    poolKey: string;
  }
  /**
   * The chosen endpoint has only a hostname: resolve it (preferring the
   * family of `requestIp`), then decideResolved gives the upstream.
   */
  | { kind: 'resolve'; hostname: string; destination: Workload; service: Service; targetPort: number; requestIp: string }
  /** Close the connection: NoHealthyUpstream, an undeclared service port, a missing waypoint. */
  | { kind: 'no-upstream'; reason: string; service?: Service }
  | { kind: 'unsupported'; reason: string };

/** A decision that dials somewhere: what a resolved hostname endpoint becomes. */
export type DialDecision = Extract<OutboundDecision, { kind: 'tcp' | 'hbone' }>;

/** The node proxy's own ports in a pod (and SOCKS5): never a destination. */
export const SELF_PORTS: ReadonlySet<number> = new Set([15001, 15006, 15008, 15080]);
const HBONE_PORT = 15008;

export function decideOutbound(state: ProxyState, f: OutboundFacts): OutboundDecision {
  const dst = f.originalDst;
  // §5.4.1 before any lookup: a loop through ourselves must never be proxied.
  if (isLoopback(dst.ip) && SELF_PORTS.has(dst.port)) return { kind: 'drop', reason: 'self-call' };
  // ztunnel `find_address`: a workload IP wins over a VIP.
  const workload = state.workloads.byAddress(f.network, dst.ip);
  if (workload !== undefined) return toWorkload(state, f, workload);
  const service = visibleServiceByVip(state, f.network, dst.ip, f.source.namespace);
  if (service !== undefined) return toService(state, f, service);
  return { kind: 'passthrough', upstream: { ip: dst.ip, port: dst.port }, reason: 'not a mesh destination' };
}

/**
 * §5.4.3 lookup restricted to services the client may see: a NAMESPACE-visible
 * service exists only for clients in its namespace. The tie-break (same
 * namespace, then canonical, then first) is ServiceView.byVip's, applied to
 * the visible ones.
 */
function visibleServiceByVip(state: ProxyState, network: string, ip: string, clientNs: string): Service | undefined {
  const exact = state.services.allByVip(network, ip);
  if (exact.length === 0) {
    // CIDR VIPs: byVip already did the longest-prefix match and tie-break.
    const s = state.services.byVip(network, ip, clientNs);
    return s !== undefined && visibleTo(s, clientNs) ? s : undefined;
  }
  return bestService(exact.filter((s) => visibleTo(s, clientNs)), clientNs);
}

function toService(state: ProxyState, f: OutboundFacts, service: Service): OutboundDecision {
  const dst = f.originalDst;
  // §5.4.3: a service waypoint takes everything addressed to the VIP, whatever the port.
  const gw = serviceWaypoint(service, f.random);
  if (gw !== undefined) {
    const wp = resolveWaypoint(state, f, gw);
    if ('kind' in wp) return wp.kind === 'no-upstream' ? { ...wp, service } : wp;
    return hbone(f, wp.upstream, hostPort(dst.ip, dst.port), wp.identities, { service, waypoint: wp.workload });
  }
  if (service.loadBalancer?.mode === 'Passthrough') {
    return { kind: 'passthrough', upstream: { ip: dst.ip, port: dst.port }, reason: 'service load balancing mode PASSTHROUGH' };
  }
  if (!service.ports.has(dst.port)) {
    return { kind: 'no-upstream', reason: `service ${service.hostname} has no port ${dst.port}`, service };
  }
  const pick = pickEndpoint(state, f.source, service, dst.port, 'standard', f.random);
  if (pick === undefined) {
    return { kind: 'no-upstream', reason: `no healthy upstream for ${service.hostname}:${dst.port}`, service };
  }
  // §5.4.5: only service-addressed traffic can reach another network, and only by double HBONE.
  if (pick.workload.network !== f.network) {
    return { kind: 'unsupported', reason: `double HBONE: ${pick.workload.uid} is on network "${pick.workload.network}"` };
  }
  const ip = pickWorkloadIp(pick.workload, dst.ip, service.ipFamilies);
  if (ip === undefined) {
    if (pick.workload.workloadIps.length === 0 && pick.workload.hostname !== '') {
      return { kind: 'resolve', hostname: pick.workload.hostname, destination: pick.workload, service, targetPort: pick.targetPort, requestIp: dst.ip };
    }
    return noAddress(pick.workload, service);
  }
  return direct(f, pick.workload, ip, pick.targetPort, service);
}

/** A 'resolve' decision finished with the address its hostname resolved to: as for any endpoint (§5.4.7). */
export function decideResolved(f: OutboundFacts, d: Extract<OutboundDecision, { kind: 'resolve' }>, ip: string): DialDecision {
  return direct(f, d.destination, ip, d.targetPort, d.service);
}

function toWorkload(state: ProxyState, f: OutboundFacts, workload: Workload): OutboundDecision {
  const dst = f.originalDst;
  // §5.4.6: a workload waypoint, unless the source is that waypoint (the sandwich loop guard).
  const gw = workload.waypoint;
  if (gw !== undefined && !fromWaypoint(state, gw, identityOf(f.source), f.sourceIp)) {
    const wp = resolveWaypoint(state, f, gw);
    if ('kind' in wp) return wp;
    return hbone(f, wp.upstream, hostPort(dst.ip, dst.port), wp.identities, { destination: workload, waypoint: wp.workload });
  }
  // Found by this very IP, so the IP is the one the client used.
  return direct(f, workload, dst.ip, dst.port, undefined);
}

/** §5.4.7: straight to the chosen workload. */
function direct(f: OutboundFacts, w: Workload, ip: string, targetPort: number, service: Service | undefined): DialDecision {
  if (w.protocol === 'TCP') {
    return { kind: 'tcp', upstream: { ip, port: targetPort }, destination: w, ...(service === undefined ? {} : { service }) };
  }
  const ids = dedupe([identityOf(w), ...sanIdentities(service)]);
  const port = f.transparentNetworkPolicies === true ? targetPort : HBONE_PORT;
  return hbone(f, { ip, port }, hostPort(ip, targetPort), ids, { destination: w, ...(service === undefined ? {} : { service }) });
}

function hbone(
  f: OutboundFacts, upstream: SocketAddr, authority: string, expectedIdentities: Identity[],
  parts: { destination?: Workload; service?: Service; waypoint?: Workload },
): Extract<OutboundDecision, { kind: 'hbone' }> {
  return { kind: 'hbone', upstream, authority, expectedIdentities, ...parts, poolKey: poolKey(f, expectedIdentities, upstream) };
}

/**
 * §5.3 WorkloadKey as a string: source identity, sorted destination
 * identities, the dialled ip:port, the source IP. Per-pod pools make the
 * source IP part redundant in in-pod mode; it is kept so one pool can serve
 * several pods (dedicated mode, tests).
 */
function poolKey(f: OutboundFacts, ids: readonly Identity[], upstream: SocketAddr): string {
  const dst = ids.map(identityKey).sort().join(',');
  return `${spiffeUri(identityOf(f.source))}|${dst}|${hostPort(upstream.ip, upstream.port)}|${f.sourceIp}`;
}

/**
 * §5.7 weighted waypoints: sampled by weight, weight 0 never chosen. If none
 * has weight, the single `waypoint` field applies.
 */
function serviceWaypoint(service: Service, random: () => number): GatewayAddress | undefined {
  const ww = service.weightedWaypoints;
  if (ww.length > 0) {
    const i = weightedIndex(ww.map((w) => w.weight), random);
    const chosen = i === undefined ? undefined : ww[i];
    if (chosen !== undefined) return chosen.destination;
  }
  return service.waypoint;
}

interface ResolvedWaypoint {
  workload: Workload;
  upstream: SocketAddr;
  identities: Identity[];
}

/**
 * §5.7: hostname form → the waypoint Service, an endpoint for its HBONE port;
 * address form → the workload at that IP (dialled on the HBONE port) or the
 * service on that VIP (as the hostname form). Expected identities: the
 * waypoint workload's plus the waypoint service's SANs.
 */
function resolveWaypoint(state: ProxyState, f: OutboundFacts, gw: GatewayAddress): ResolvedWaypoint | OutboundDecision {
  const port = gw.hboneMtlsPort;
  let service: Service | undefined;
  let workload: Workload | undefined;
  let targetPort = port;
  if (gw.kind === 'hostname') {
    service = state.services.byNamespacedHostname(gw.namespace, gw.hostname);
  } else {
    const found = state.findAddress(gw.network, gw.ip);
    if (found?.kind === 'workload') workload = found.workload;
    else service = found?.service;
  }
  const name = gw.kind === 'hostname' ? `${gw.namespace}/${gw.hostname}` : `${gw.network}/${gw.ip}`;
  if (service !== undefined) {
    const pick = pickEndpoint(state, f.source, service, port, 'waypoint', f.random);
    if (pick === undefined) return { kind: 'no-upstream', reason: `waypoint ${name} has no usable endpoint for port ${port}` };
    workload = pick.workload;
    targetPort = pick.targetPort;
  }
  if (workload === undefined) return { kind: 'no-upstream', reason: `waypoint ${name} not found` };
  if (workload.network !== f.network) {
    return { kind: 'unsupported', reason: `double HBONE: waypoint ${workload.uid} is on network "${workload.network}"` };
  }
  const ip = pickWorkloadIp(workload, f.originalDst.ip, service?.ipFamilies);
  if (ip === undefined) return noAddress(workload, service);
  return { workload, upstream: { ip, port: targetPort }, identities: dedupe([identityOf(workload), ...sanIdentities(service)]) };
}

/**
 * ztunnel `check_from_waypoint`: the source is the destination's waypoint if
 * it has the identity of, and an IP of, the waypoint workload or an endpoint
 * of the waypoint service that its health policy keeps (ztunnel stores no other).
 */
function fromWaypoint(state: ProxyState, gw: GatewayAddress, srcId: Identity, srcIp: string): boolean {
  const isWaypoint = (w: Workload | undefined): boolean => w !== undefined
    && identityKey(identityOf(w)) === identityKey(srcId) && w.workloadIps.includes(srcIp);
  let service: Service | undefined;
  if (gw.kind === 'hostname') service = state.services.byNamespacedHostname(gw.namespace, gw.hostname);
  else {
    const found = state.findAddress(gw.network, gw.ip);
    if (found?.kind === 'workload') return isWaypoint(found.workload);
    service = found?.service;
  }
  if (service === undefined) return false;
  // Only endpoints the health policy keeps, as ztunnel stores them: a not-ready waypoint pod is not the waypoint.
  for (const [uid, ep] of service.endpoints) if (endpointSelectable(service, ep) && isWaypoint(state.workloads.byUid(uid))) return true;
  return false;
}

function noAddress(w: Workload, service: Service | undefined): OutboundDecision {
  return { kind: 'no-upstream', reason: `workload ${w.uid} has no usable IP`, ...(service === undefined ? {} : { service }) };
}

/** Service SANs as identities; a SAN that is not an Istio SPIFFE ID cannot match a peer identity, so it is skipped. */
function sanIdentities(service: Service | undefined): Identity[] {
  const out: Identity[] = [];
  for (const san of service?.subjectAltNames ?? []) {
    try {
      out.push(parseSpiffe(san));
    } catch {
      // Not a spiffe://td/ns/x/sa/y URI.
    }
  }
  return out;
}

function dedupe(ids: readonly Identity[]): Identity[] {
  const seen = new Set<string>();
  return ids.filter((id) => {
    const k = identityKey(id);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** "ip:port", or "[v6]:port" as an HTTP authority and a socket address print. */
export function hostPort(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

function isLoopback(ip: string): boolean {
  return ip.startsWith('127.') || ip === '::1' || ip.startsWith('::ffff:127.');
}
