// SPDX-License-Identifier: Apache-2.0
// Port 15008: HBONE into a pod (reference §5.6). The HboneServer does TLS
// (client certificate required, same trust domain) and CONNECT parsing; this
// handler does the rest in ztunnel's order — destination validation and the
// self-call port check (decide/inbound.ts), registration for policy
// re-checks, RBAC with the peer identity against the target port — and only
// then connects to the app (from the client's address, or from loopback with
// a PROXY v2 header for an app tunnel; within ztunnel's 10 s) so that the 200
// goes out once the upstream exists. On the native engine the engine makes
// that connect, as decided here (the carrier's dial). The server turns a
// throw here into a 503 for this stream alone.
import type net from 'node:net';
import { connectTcp } from '@skein/bpf';
import type { AuthzRequest } from '../decide/authz.ts';
import { decideInbound } from '../decide/inbound.ts';
import { hostPort } from '../decide/outbound.ts';
import type { PodContext } from '../inpod/listeners.ts';
import type { Service } from '../state/service.ts';
import type { Workload } from '../state/workload.ts';
import { policyRejection } from './access-log.ts';
import { appTunnelHeader } from './app-tunnel.ts';
import { forwardedHost } from './hbone/headers.ts';
import { connected, CONNECT_TIMEOUT_MS } from './connect.ts';
import { checkFault } from './guard.ts';
import { pooledSocket } from './pooled-reads.ts';
import type { ConnectDecision, ConnectRequest } from './hbone/server.ts';
import type { ProxyInputs } from './inputs.ts';
import { findSourceWorkload } from './source-workload.ts';


export function inboundHboneHandler(p: ProxyInputs, pod: PodContext, onAccepted: (req: ConnectRequest, accepted: InboundAccepted) => void) {
  const handle = connectHandler(p, pod, onAccepted);
  return async (req: ConnectRequest): Promise<ConnectDecision> => {
    // The guard for one CONNECT: whatever fails answers this stream 503 (the
    // server's onReject writes the access-log line), closes its upstream,
    // and is counted; the session and every other tunnel go on.
    let upstream: net.Socket | undefined;
    try {
      return await handle(req, (u) => { upstream = u; });
    } catch (err) {
      upstream?.destroy();
      p.guard.count('hbone', err);
      return { status: 503, reason: `internal error: ${err instanceof Error ? err.message : String(err)}` };
    }
  };
}

function connectHandler(p: ProxyInputs, pod: PodContext, onAccepted: (req: ConnectRequest, accepted: InboundAccepted) => void) {
  return async (req: ConnectRequest, made: (upstream: net.Socket) => void): Promise<ConnectDecision> => {
    const fault = checkFault('hbone');
    if (fault !== undefined) await fault;
    const destination = findSourceWorkload(p.state, p.nodeName, pod.info);
    if (destination === undefined) return { status: 503, reason: `no workload for pod ${pod.info.namespace}/${pod.info.name}` };
    const d = decideInbound(p.state, {
      destination, authority: req.authority, localIp: req.localAddress.ip, network: p.network, localhostAppTunnel: p.localhostAppTunnel,
    });
    if (d.kind === 'reject') return { status: d.status, reason: d.reason };
    const authz: AuthzRequest = { source: req.peer, sourceIp: req.peerAddress.ip, destinationIp: d.authzDestination.ip, destinationPort: d.authzDestination.port };
    // Registered before it is authorized and through the connect below: a
    // DENY arriving meanwhile closes it (ConnectionManager.admit).
    let upstream: net.Socket | undefined;
    let revoked: string | undefined;
    const admission = p.connections.admit({
      destinationUid: destination.uid,
      request: authz,
      // As config_dump lists it (workloadState connections).
      pod: {
        uid: pod.uid,
        view: {
          src: hostPort(req.peerAddress.ip, req.peerAddress.port), originalDst: req.authority.kind === 'hostname' ? req.authority.host : forwardedHost(req.headers) ?? null,
          actualDst: hostPort(authz.destinationIp, authz.destinationPort), protocol: 'HBONE',
        },
      },
      close: (reason) => {
        revoked = reason;
        upstream?.destroy();
        // On the native engine the open tunnel is the engine's, not the socket's.
        req.carrier?.close(`connection closed due to policy change: ${reason}`);
      },
    });
    if (!admission.allowed) return { status: 401, reason: policyRejection(admission.reason) };
    const header = d.proxyProtocol ? appTunnelHeader(req, d.service) : undefined;
    // The connect, whoever makes it: in the pod's netns with our mark and
    // keepalive, from the client's address when so decided.
    const to = {
      address: d.upstream.ip, port: d.upstream.port, netns: pod.netnsFd,
      ...(p.mark === undefined ? {} : { mark: p.mark }),
      ...(p.keepalive === undefined ? {} : { keepalive: p.keepalive }),
      ...(d.from === 'client' ? { localAddress: req.peerAddress.ip } : {}),
    };
    const dial = req.carrier?.dial;
    if (dial !== undefined) {
      // The native engine connects the upstream itself and answers the
      // client (docs/native-engine.md): no socket in Node.
      const failed = await dial({ ...to, ...(header === undefined ? {} : { header }) });
      if (failed !== undefined) {
        admission.release();
        return failed;
      }
      req.carrier?.onEnd(admission.release);
      onAccepted(req, { destination, service: d.service, authz, upstream: undefined, headerBytes: header?.length ?? 0 });
      return { status: 200, dialed: true };
    }
    try {
      upstream = pooledSocket((onread) => connectTcp({
        ...to, allowHalfOpen: true, noDelay: true, onread, ...(to.localAddress === undefined ? {} : { transparent: true }),
      }));
    } catch (err) {
      admission.release();
      throw err;
    }
    made(upstream);
    const err = await connected(upstream, CONNECT_TIMEOUT_MS, req.signal);
    if (revoked !== undefined) return { status: 401, reason: `connection closed due to policy change: ${revoked}` };
    if (err !== undefined) {
      admission.release();
      return { status: 503, reason: `connect to ${d.upstream.ip}:${d.upstream.port} failed: ${err.message}` };
    }
    const app = upstream;
    // Tracked until the tunnel ends: the socket's close, or the engine's end
    // when it carries the bytes (Node's copy of the socket closes at the hand-over).
    if (req.carrier !== undefined) req.carrier.onEnd(admission.release);
    else app.once('close', admission.release);
    // §6: the header goes first, before the 200 lets any payload through.
    if (header !== undefined) app.write(header);
    onAccepted(req, { destination, service: d.service, authz, upstream: app, headerBytes: header?.length ?? 0 });
    return { status: 200, upstream: app };
  };
}

export interface InboundAccepted {
  destination: Workload;
  service: Service | undefined;
  authz: AuthzRequest;
  /** The app socket Node connected; undefined when the native engine dialled it. */
  upstream: net.Socket | undefined;
  /** Bytes of PROXY header written to the upstream before the payload (not the client's bytes). */
  headerBytes: number;
}
