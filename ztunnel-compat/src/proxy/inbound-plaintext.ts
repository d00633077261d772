// SPDX-License-Identifier: Apache-2.0
// Port 15006: plaintext inbound captured by istio-cni's PREROUTING rule.
// Authorization runs with no peer identity (so PeerAuthentication STRICT,
// which arrives as a DENY of plaintext, refuses it); an allowed connection is
// made to the app from the client's own address (IP_TRANSPARENT) so the app
// sees the real client. The connection is registered for policy re-checks
// before it is authorized (ConnectionManager.admit), so a DENY arriving while
// the app is dialled closes it. Plaintext to a PROXY application-tunnel port
// is refused (decide/inbound.ts plaintextRefusal): its sender could forge the
// identity the waypoint behind it trusts.
import type net from 'node:net';
import { connectTcp, originalDst } from '@skein/bpf';
import type { AuthzRequest } from '../decide/authz.ts';
import { plaintextRefusal } from '../decide/inbound.ts';
import { hostPort, SELF_PORTS } from '../decide/outbound.ts';
import type { PodContext } from '../inpod/listeners.ts';
import { accessFields, logComplete, logFailed, policyRejection, type AccessFields } from './access-log.ts';
import { connected, CONNECT_TIMEOUT_MS } from './connect.ts';
import { checkFault } from './guard.ts';
import type { ProxyInputs } from './inputs.ts';
import { guessInboundService, tcpLabels } from './metrics.ts';
import { pooledSocket } from './pooled-reads.ts';
import { relay } from './relay.ts';

export function handleInboundPlaintext(p: ProxyInputs, socket: net.Socket, pod: PodContext): void {
  let upstream: net.Socket | undefined;
  const fields = (): AccessFields => ({ 'src.addr': hostPort(socket.remoteAddress ?? '', socket.remotePort ?? 0), direction: 'inbound' });
  p.guard.run('inbound', fields, () => [socket, upstream], () => inbound(p, socket, pod, (u) => { upstream = u; }));
}

async function inbound(p: ProxyInputs, socket: net.Socket, pod: PodContext, made: (upstream: net.Socket) => void): Promise<void> {
  const fault = checkFault('inbound');
  if (fault !== undefined) await fault;
  const started = Date.now();
  const src = { ip: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
  let dst;
  try {
    dst = originalDst(socket);
  } catch (err) {
    p.log.warn({ scope: 'inbound', err: (err as Error).message }, 'no original destination; closing');
    socket.destroy();
    return;
  }
  const destination = p.state.workloads.byAddress(p.network, dst.address);
  const request: AuthzRequest = { source: undefined, sourceIp: src.ip, destinationIp: dst.address, destinationPort: dst.port };
  const source = p.state.workloads.byAddress(p.network, src.ip);
  const destinationService = destination === undefined ? undefined : guessInboundService(p.state.services.forWorkload(destination), destination, dst.port);
  const base = { reporter: 'destination' as const, source, sourceIdentity: undefined, destination, destinationService, mtls: false };
  const fields = accessFields({ direction: 'inbound', srcAddr: hostPort(src.ip, src.port), source, srcIdentity: undefined, dstAddr: hostPort(dst.address, dst.port), destination, service: undefined });

  const refuse = (reason: string): void => {
    const labels = tcpLabels({ ...base, flag: 'DENY' });
    p.metrics.opened(labels);
    p.metrics.closed(labels, 0, 0);
    logFailed(p.access, fields, reason);
    socket.destroy();
  };
  if (destination === undefined || destination.namespace !== pod.info.namespace) { refuse('unknown destination workload'); return; }
  if (SELF_PORTS.has(dst.port)) { refuse(`port ${dst.port} is a proxy port`); return; }
  const forged = plaintextRefusal(destination, dst.port);
  if (forged !== undefined) { refuse(forged); return; }
  // Set by a policy re-check (a closure TypeScript's narrowing does not see).
  const revoked = { by: undefined as string | undefined };
  let upstream: net.Socket | undefined;
  const admission = p.connections.admit({
    destinationUid: destination.uid,
    request,
    pod: { uid: pod.uid, view: { src: hostPort(src.ip, src.port), originalDst: null, actualDst: hostPort(dst.address, dst.port), protocol: 'TCP' } },
    close: (reason) => {
      revoked.by = reason;
      p.access.info({ ...fields, reason }, 'connection closed by policy change');
      socket.destroy();
      upstream?.destroy();
    },
  });
  if (!admission.allowed) { refuse(policyRejection(admission.reason)); return; }

  const labels = tcpLabels({ ...base, flag: '-' });
  p.metrics.opened(labels);
  let counted = false;
  try {
      // From the client's address: the reply gets connmark 0x111 and comes back
    // to this socket through route table 100 (istio-cni's rules).
    upstream = pooledSocket((onread) => connectTcp({
      address: dst.address, port: dst.port, netns: pod.netnsFd, mark: p.mark, allowHalfOpen: true, noDelay: true, onread,
      ...(p.keepalive === undefined ? {} : { keepalive: p.keepalive }),
      ...(src.ip === '' ? {} : { localAddress: src.ip, transparent: true }),
    }));
    made(upstream);
    const err = await connected(upstream, CONNECT_TIMEOUT_MS);
    if (err !== undefined) {
      p.metrics.closed(labels, 0, 0, err);
      counted = true;
      logComplete(p.access, fields, { bytesSent: 0, bytesRecv: 0, durationMs: Date.now() - started, error: revoked.by === undefined ? err.message : 'connection closed due to policy change' });
      socket.destroy();
      return;
    }
    const r = await relay(socket, upstream);
    p.metrics.closed(labels, r.aToB, r.bToA, r.error);
    counted = true;
    logComplete(p.access, fields, { bytesSent: r.bToA, bytesRecv: r.aToB, durationMs: Date.now() - started, error: revoked.by === undefined ? r.error?.message : 'connection closed due to policy change' });
  } finally {
    // A throw (the upstream socket refused at once: EMFILE, say) still closes what it opened.
    if (!counted) p.metrics.closed(labels, 0, 0, 'error');
    admission.release();
  }
}
