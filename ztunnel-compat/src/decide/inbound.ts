// SPDX-License-Identifier: Apache-2.0
// Where an HBONE CONNECT into a pod goes (reference §5.6 steps 3-5 and 7,
// §6): destination validation, the upstream address and port, and how to
// reach it — from the client's own address, or from loopback with a PROXY v2
// header for a pod that takes an application tunnel (a sandwiched waypoint).
// Pure: the handler does RBAC and the connect.
import type { Authority } from '../proxy/hbone/h2.ts';
import type { GatewayAddress } from '../state/address.ts';
import { endpointSelectable, type Service } from '../state/service.ts';
import type { ProxyState } from '../state/store.ts';
import type { Workload } from '../state/workload.ts';
import { SELF_PORTS, type SocketAddr } from './outbound.ts';

export interface InboundFacts {
  /** This pod's workload (the destination is always the pod that was dialled). */
  destination: Workload;
  authority: Authority;
  /** The IP the TCP connection was made to: the pod's own. */
  localIp: string;
  network: string;
  /** LOCALHOST_APP_TUNNEL: reach an app tunnel from loopback. */
  localhostAppTunnel: boolean;
}

export type InboundDecision =
  | { kind: 'reject'; status: 400 | 503; reason: string }
  | {
    kind: 'connect';
    upstream: SocketAddr;
    /** 'client': from the HBONE client's IP (IP_TRANSPARENT); 'loopback': an ordinary local connect. */
    from: 'client' | 'loopback';
    /** Write a PROXY v2 header before any payload (§6). */
    proxyProtocol: boolean;
    /**
     * What RBAC sees as the destination: the pod IP and the port the upstream
     * is dialled on (never 15008), which is the application tunnel's port when
     * it names one, as ztunnel's build_inbound_request swaps it in.
     */
    authzDestination: SocketAddr;
    /** The service the client addressed, when the authority is one of its VIPs (TLV 0xD1, metrics). */
    service: Service | undefined;
  };

export function decideInbound(state: ProxyState, f: InboundFacts): InboundDecision {
  const a = f.authority;
  if (a.kind === 'hostname') return { kind: 'reject', status: 503, reason: 'hostname authorities (double HBONE) are not supported yet' };
  const w = f.destination;
  const tunnel = w.applicationTunnel;
  const own = a.host === f.localIp || w.workloadIps.includes(a.host);
  // §5.6.4: the authority must be this pod, unless the pod takes an app
  // tunnel or is the waypoint of whatever the authority names.
  if (!own && tunnel === undefined && !isWaypointOf(state, f.network, a.host, w)) {
    return { kind: 'reject', status: 400, reason: `authority ${a.host} is not this pod (connected to ${f.localIp})` };
  }
  if (SELF_PORTS.has(a.port)) return { kind: 'reject', status: 503, reason: `port ${a.port} is a proxy port` };
  const podIp = own ? a.host : f.localIp;
  const port = tunnel?.port !== undefined && tunnel.port !== 0 ? tunnel.port : a.port;
  const service = own ? undefined : state.services.byVip(f.network, a.host, w.namespace);
  const viaLoopback = tunnel?.protocol === 'PROXY' && f.localhostAppTunnel;
  return {
    kind: 'connect',
    upstream: { ip: viaLoopback ? loopbackFor(podIp) : podIp, port },
    from: viaLoopback ? 'loopback' : 'client',
    proxyProtocol: tunnel?.protocol === 'PROXY',
    authzDestination: { ip: podIp, port },
    service,
  };
}

function loopbackFor(ip: string): string {
  return ip.includes(':') ? '::1' : '127.0.0.1';
}

/**
 * §5.6.4 third case: `ip` is a service or workload whose waypoint (any of a
 * service's weighted waypoints too) is this pod: the pod is the waypoint
 * workload or an endpoint of the waypoint service.
 */
function isWaypointOf(state: ProxyState, network: string, ip: string, self: Workload): boolean {
  const found = state.findAddress(network, ip);
  if (found === undefined) return false;
  const gateways: GatewayAddress[] = [];
  if (found.kind === 'workload') {
    if (found.workload.waypoint !== undefined) gateways.push(found.workload.waypoint);
  } else {
    if (found.service.waypoint !== undefined) gateways.push(found.service.waypoint);
    for (const ww of found.service.weightedWaypoints) gateways.push(ww.destination);
  }
  return gateways.some((gw) => gatewayIncludes(state, gw, self));
}

function gatewayIncludes(state: ProxyState, gw: GatewayAddress, self: Workload): boolean {
  let service: Service | undefined;
  if (gw.kind === 'hostname') service = state.services.byNamespacedHostname(gw.namespace, gw.hostname);
  else {
    const found = state.findAddress(gw.network, gw.ip);
    if (found?.kind === 'workload') return found.workload.uid === self.uid;
    service = found?.service;
  }
  // As ztunnel's contains_endpoint: only endpoints the health policy keeps (a not-ready waypoint pod is none).
  const ep = service?.endpoints.get(self.uid);
  return service !== undefined && ep !== undefined && endpointSelectable(service, ep);
}

/**
 * Plaintext arriving on 15006 for `port` of `w`: why it must be refused, or
 * undefined. A pod that takes a PROXY application tunnel (a sandwiched
 * waypoint) trusts the PROXY v2 header in front of the bytes on its tunnel
 * port — on every port when the tunnel names none — and reads the caller's
 * identity from its TLV 0xD0. Plaintext is relayed byte for byte, so its
 * sender would write that header, identity included. Only Skein writes it,
 * from a peer verified by mTLS (§6), so such plaintext is refused rather
 * than carried (a header of our own naming no identity would still hand the
 * waypoint a source address nobody verified, and Envoy's inbound binding
 * expects a mesh peer there).
 */
export function plaintextRefusal(w: Workload, port: number): string | undefined {
  const tunnel = w.applicationTunnel;
  if (tunnel?.protocol !== 'PROXY') return undefined;
  if (tunnel.port !== undefined && tunnel.port !== 0 && tunnel.port !== port) return undefined;
  return `port ${port} takes a PROXY application tunnel: only HBONE from a verified peer may reach it`;
}
