// SPDX-License-Identifier: Apache-2.0
// Port 15008: HBONE into a pod (reference §5.6). The HboneServer does TLS
// (client certificate required, same trust domain) and CONNECT parsing; this
// handler does the rest in ztunnel's order — destination validation and the
// self-call port check (decide/inbound.ts), RBAC with the peer identity
// against the target port — and only then connects to the app (from the
// client's address, or from loopback with a PROXY v2 header for an app
// tunnel) so that the 200 goes out once the upstream exists.
import type net from 'node:net';
import { connectTcp } from '@skein/bpf';
import { authorize, type AuthzRequest } from '../decide/authz.ts';
import { decideInbound } from '../decide/inbound.ts';
import type { PodContext } from '../inpod/listeners.ts';
import type { Service } from '../state/service.ts';
import type { Workload } from '../state/workload.ts';
import { policyRejection } from './access-log.ts';
import { appTunnelHeader } from './app-tunnel.ts';
import { pooledSocket } from './pooled-reads.ts';
import type { ConnectDecision, ConnectRequest } from './hbone/server.ts';
import type { ProxyInputs } from './inputs.ts';
import { findSourceWorkload } from './source-workload.ts';


export function inboundHboneHandler(p: ProxyInputs, pod: PodContext, onAccepted: (req: ConnectRequest, accepted: InboundAccepted) => void) {
  return async (req: ConnectRequest): Promise<ConnectDecision> => {
    const destination = findSourceWorkload(p.state, p.nodeName, pod.info);
    if (destination === undefined) return { status: 503, reason: `no workload for pod ${pod.info.namespace}/${pod.info.name}` };
    const d = decideInbound(p.state, {
      destination, authority: req.authority, localIp: req.localAddress.ip, network: p.network, localhostAppTunnel: p.localhostAppTunnel,
    });
    if (d.kind === 'reject') return { status: d.status, reason: d.reason };
    const authz: AuthzRequest = { source: req.peer, sourceIp: req.peerAddress.ip, destinationIp: d.authzDestination.ip, destinationPort: d.authzDestination.port };
    const verdict = authorize(p.state.policies.forWorkload(destination.namespace, destination.authorizationPolicies).policies, authz);
    if (!verdict.allowed) return { status: 401, reason: policyRejection(verdict.reason) };
    const upstream = pooledSocket((onread) => connectTcp({
      address: d.upstream.ip, port: d.upstream.port, netns: pod.netnsFd, mark: p.mark, allowHalfOpen: true, noDelay: true, onread,
      ...(d.from === 'client' ? { localAddress: req.peerAddress.ip, transparent: true } : {}),
    }));
    const err = await new Promise<Error | undefined>((resolve) => {
      upstream.once('connect', () => { resolve(undefined); });
      upstream.once('error', resolve);
    });
    if (err !== undefined) return { status: 503, reason: `connect to ${d.upstream.ip}:${d.upstream.port} failed: ${err.message}` };
    // §6: the header goes first, before the 200 lets any payload through.
    const header = d.proxyProtocol ? appTunnelHeader(req, d.service) : undefined;
    if (header !== undefined) upstream.write(header);
    onAccepted(req, { destination, service: d.service, authz, upstream, headerBytes: header?.length ?? 0 });
    return { status: 200, upstream };
  };
}

export interface InboundAccepted {
  destination: Workload;
  service: Service | undefined;
  authz: AuthzRequest;
  upstream: net.Socket;
  /** Bytes of PROXY header written to the upstream before the payload (not the client's bytes). */
  headerBytes: number;
}
