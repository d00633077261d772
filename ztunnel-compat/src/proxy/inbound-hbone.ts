// SPDX-License-Identifier: Apache-2.0
// Port 15008: HBONE into a pod (reference §5.6). The HboneServer does TLS
// (client certificate required, same trust domain) and CONNECT parsing; this
// handler does the rest in ztunnel's order — destination validation, the
// self-call port check, RBAC with the peer identity against the target port —
// and only then connects to the app (from the client's address, transparent)
// so that the 200 goes out once the upstream exists.
import type net from 'node:net';
import { connectTcp } from '@skein/bpf';
import { authorize, type AuthzRequest } from '../decide/authz.ts';
import { SELF_PORTS } from '../decide/outbound.ts';
import type { PodContext } from '../inpod/listeners.ts';
import type { Workload } from '../state/workload.ts';
import type { ConnectDecision, ConnectRequest } from './hbone/server.ts';
import type { ProxyInputs } from './inputs.ts';
import { findSourceWorkload } from './source-workload.ts';


export function inboundHboneHandler(p: ProxyInputs, pod: PodContext, onAccepted: (req: ConnectRequest, destination: Workload, authz: AuthzRequest, upstream: net.Socket) => void) {
  return async (req: ConnectRequest): Promise<ConnectDecision> => {
    const destination = findSourceWorkload(p.state, p.nodeName, pod.info);
    if (destination === undefined) return { status: 503, reason: `no workload for pod ${pod.info.namespace}/${pod.info.name}` };
    const a = req.authority;
    if (a.kind === 'hostname') return { status: 503, reason: 'hostname authorities (double HBONE) are not supported yet' };
    // §5.6.4 destination validation: the authority must be this pod's own
    // address (or the pod takes an application tunnel).
    if (destination.applicationTunnel === undefined && a.host !== req.localAddress.ip && !destination.workloadIps.includes(a.host)) {
      return { status: 400, reason: `authority ${a.host} is not this pod (connected to ${req.localAddress.ip})` };
    }
    if (SELF_PORTS.has(a.port)) return { status: 503, reason: `port ${a.port} is a proxy port` };
    const authz: AuthzRequest = { source: req.peer, sourceIp: req.peerAddress.ip, destinationIp: a.host, destinationPort: a.port };
    const verdict = authorize(p.state.policies.forWorkload(destination.namespace, destination.authorizationPolicies).policies, authz);
    if (!verdict.allowed) return { status: 401, reason: `RBAC: ${verdict.reason}` };
    const upstream = connectTcp({
      address: a.host, port: a.port, netns: pod.netnsFd, mark: p.mark, allowHalfOpen: true, noDelay: true,
      localAddress: req.peerAddress.ip, transparent: true,
    });
    const err = await new Promise<Error | undefined>((resolve) => {
      upstream.once('connect', () => { resolve(undefined); });
      upstream.once('error', resolve);
    });
    if (err !== undefined) return { status: 503, reason: `connect to ${a.host}:${a.port} failed: ${err.message}` };
    onAccepted(req, destination, authz, upstream);
    return { status: 200, upstream };
  };
}
