// SPDX-License-Identifier: Apache-2.0
// Port 15001: a pod's outbound TCP, captured by istio-cni's OUTPUT rule.
// Decide first (decide/outbound.ts, pure), then act: drop, plain TCP
// (passthrough or a TunnelProtocol NONE destination), or HBONE with the pod's
// own certificate. Every upstream socket is made in the pod's netns with
// SO_MARK 0x539, so it leaves from the pod's IP and is not captured again.
// Plain TCP connects are bounded by ztunnel's 10 s; sockets on both sides
// keep TCP keepalive (KEEPALIVE_*); the whole task runs under the
// connection guard (guard.ts).
import type { Duplex } from 'node:stream';
import { connectTcp } from '@skein/bpf';
import { decideOutbound, decideResolved, hostPort, type OutboundDecision } from '../decide/outbound.ts';
import type { PodContext } from '../inpod/listeners.ts';
import { identityOf, type Workload } from '../state/workload.ts';
import { accessFields, logComplete, logFailed, type AccessFacts, type AccessFields } from './access-log.ts';
import type { HboneClient } from './hbone/client.ts';
import { HboneError, HboneErrorCode } from './hbone/error.ts';
import { IdentityError } from '../identity/error.ts';
import type { NativeHboneClient } from './hbone/native-client.ts';
import { forwardedHeader, sourceBaggage, traceparent } from './hbone/headers.ts';
import type { ProxyInputs } from './inputs.ts';
import { tcpLabels, type ResponseFlag } from './metrics.ts';
import type { OnDemandDns, OnDemandDnsLabels } from './on-demand-dns.ts';
import type { PodConnection } from './pod-connection.ts';
import { pooledSocket } from './pooled-reads.ts';
import { connected, CONNECT_TIMEOUT_MS } from './connect.ts';
import { checkFault } from './guard.ts';
import { viaNativeHbone } from './outbound-native.ts';
import { relay } from './relay.ts';
import { waitForSourceWorkload } from './source-workload.ts';

export interface OutboundDeps extends ProxyInputs {
  hbone: HboneClient;
  /** When set, HBONE tunnels run on the native engine (SKEIN_HBONE_ENGINE=native). */
  nativeHbone?: NativeHboneClient | undefined;
  onDemandDns: OnDemandDns;
}

export function handleOutbound(p: OutboundDeps, conn: PodConnection, pod: PodContext): void {
  // The upstream (a TCP socket or an HBONE tunnel) once there is one, for the guard to close with the pod's end.
  let upstream: Duplex | undefined;
  const fields = (): AccessFields => ({ 'src.addr': hostPort(conn.srcIp, conn.srcPort), direction: 'outbound' });
  const made: Made = { upstream: (u) => { upstream = u; } };
  p.guard.run('outbound', fields, () => [conn, upstream], () => outbound(p, conn, pod, made));
}

async function outbound(p: OutboundDeps, conn: PodConnection, pod: PodContext, made: Made): Promise<void> {
  const fault = checkFault('outbound');
  if (fault !== undefined) await fault;
  const started = Date.now();
  const dst = conn.originalDst();
  const srcIp = conn.srcIp;
  const srcAddr = `${srcIp}:${conn.srcPort}`;
  const dstAddr = hostPort(dst.address, dst.port);
  const source = await waitForSourceWorkload(p.state, p.nodeName, pod.info);
  const fields = (more: Partial<AccessFacts> = {}): AccessFields => accessFields({
    direction: 'outbound', srcAddr, source, srcIdentity: undefined, dstAddr, destination: undefined, service: undefined, ...more,
  });
  if (source === undefined) {
    logFailed(p.access, { ...fields(), 'src.workload': pod.info.name, 'src.namespace': pod.info.namespace }, `unknown source workload ${pod.info.namespace}/${pod.info.name} on ${p.nodeName}`);
    conn.destroy();
    return;
  }
  const facts = {
    source, originalDst: { ip: dst.address, port: dst.port }, sourceIp: srcIp, network: p.network, random: Math.random,
    transparentNetworkPolicies: p.transparentNetworkPolicies === true,
  };
  const d = decideOutbound(p.state, facts);
  let decision: Exclude<OutboundDecision, { kind: 'resolve' }>;
  if (d.kind !== 'resolve') decision = d;
  else {
    // An endpoint known only by hostname: look it up now (on-demand DNS).
    try {
      decision = decideResolved(facts, d, await p.onDemandDns.resolve(d.hostname, d.requestIp, dnsLabels(source, d.hostname)));
    } catch (err) {
      p.metrics.failed(tcpLabels({ reporter: 'source', source, sourceIdentity: identityOf(source), destination: d.destination, destinationService: d.service, mtls: false, flag: 'CONNECT' }));
      logFailed(p.access, fields({ destination: d.destination, service: d.service }), (err as Error).message);
      conn.destroy();
      return;
    }
  }
  switch (decision.kind) {
    case 'drop':
      logFailed(p.access, fields(), decision.reason);
      conn.destroy();
      return;
    case 'no-upstream':
    case 'unsupported': {
      // Never a fallback to the direct path: a missing waypoint would bypass its L7 policy.
      const service = decision.kind === 'no-upstream' ? decision.service : undefined;
      p.metrics.failed(tcpLabels({ reporter: 'source', source, sourceIdentity: identityOf(source), destination: undefined, destinationService: service, mtls: false, flag: 'CONNECT' }));
      logFailed(p.access, fields({ service }), decision.reason);
      conn.destroy();
      return;
    }
    case 'passthrough':
    case 'tcp':
    case 'hbone': {
      // Listed in config_dump (workloadState connections) while it lasts.
      const untrack = p.connections.registerOutbound(pod.uid, {
        src: srcAddr, originalDst: dstAddr, actualDst: hostPort(decision.upstream.ip, decision.upstream.port), protocol: decision.kind === 'hbone' ? 'HBONE' : 'TCP',
      });
      try {
        await (decision.kind === 'hbone' ? viaHbone(p, conn, pod, source, decision, fields, started, made) : viaTcp(p, conn, pod, source, decision, fields, started, made));
      } finally {
        untrack();
      }
      return;
    }
  }
}

function dnsLabels(source: Workload, hostname: string): OnDemandDnsLabels {
  const l = tcpLabels({ reporter: 'source', source, sourceIdentity: identityOf(source), destination: undefined, destinationService: undefined, mtls: false, flag: '-' });
  return {
    source_workload: l.source_workload, source_canonical_service: l.source_canonical_service, source_canonical_revision: l.source_canonical_revision,
    source_workload_namespace: l.source_workload_namespace, source_principal: l.source_principal, source_app: l.source_app,
    source_version: l.source_version, source_cluster: l.source_cluster, hostname,
  };
}

type Fields = (more?: Partial<AccessFacts>) => AccessFields;
/** Hands the upstream, once made, to the connection's guard. */
interface Made {
  upstream: (upstream: Duplex) => void;
}

type TcpDecision = Extract<OutboundDecision, { kind: 'passthrough' | 'tcp' }>;
type HboneDecision = Extract<OutboundDecision, { kind: 'hbone' }>;

async function viaTcp(p: OutboundDeps, conn: PodConnection, pod: PodContext, source: Workload, d: TcpDecision, fields: Fields, started: number, made: Made): Promise<void> {
  const socket = conn.socket();
  const destination = d.kind === 'tcp' ? d.destination : undefined;
  const service = d.kind === 'tcp' ? d.service : undefined;
  const labels = (flag: ResponseFlag): ReturnType<typeof tcpLabels> => tcpLabels({ reporter: 'source', source, sourceIdentity: identityOf(source), destination, destinationService: service, mtls: false, flag });
  const upstream = pooledSocket((onread) => connectTcp({
    address: d.upstream.ip, port: d.upstream.port, netns: pod.netnsFd, mark: p.mark, allowHalfOpen: true, noDelay: true, onread,
    ...(p.keepalive === undefined ? {} : { keepalive: p.keepalive }),
  }));
  made.upstream(upstream);
  // ztunnel's connect timeout; a client that leaves meanwhile abandons the connect.
  const gone = new AbortController();
  const onGone = (): void => { gone.abort(); };
  socket.once('close', onGone);
  const failed = await connected(upstream, CONNECT_TIMEOUT_MS, gone.signal);
  socket.off('close', onGone);
  const f = fields({ dstAddr: hostPort(d.upstream.ip, d.upstream.port), destination, service });
  if (failed !== undefined) {
    p.metrics.failed(labels('CONNECT'));
    logFailed(p.access, f, failed.message);
    socket.destroy();
    return;
  }
  const l = labels('-');
  p.metrics.opened(l);
  const r = await relay(socket, upstream);
  p.metrics.closed(l, r.aToB, r.bToA, r.error);
  logComplete(p.access, f, { bytesSent: r.aToB, bytesRecv: r.bToA, durationMs: Date.now() - started, error: r.error?.message });
}

async function viaHbone(p: OutboundDeps, conn: PodConnection, pod: PodContext, source: Workload, d: HboneDecision, fields: Fields, started: number, made: Made): Promise<void> {
  // As ztunnel: the workload dialled (a waypoint, when there is one) is the
  // destination; the service is the one the client addressed.
  const identity = identityOf(source);
  const f = fields({ srcIdentity: identity, dstAddr: hostPort(d.upstream.ip, d.upstream.port), hboneAddr: d.authority, destination: d.waypoint ?? d.destination, service: d.service });
  const labels = (flag: ResponseFlag): ReturnType<typeof tcpLabels> => tcpLabels({ reporter: 'source', source, sourceIdentity: identity, destination: d.waypoint ?? d.destination, destinationService: d.service, mtls: true, flag });
  const headers = {
    baggage: sourceBaggage(source, p.clusterId),
    forwarded: forwardedHeader(conn.srcIp, conn.srcPort, d.service?.hostname),
    traceparent: traceparent(),
  };
  if (p.nativeHbone !== undefined) {
    await viaNativeHbone(p, p.nativeHbone, conn, pod, { identity, decision: d, headers, fields: f, labels, started });
    return;
  }
  const socket = conn.socket();
  let tunnel: Duplex;
  try {
    const cert = await p.secrets.fetch(identity);
    tunnel = await p.hbone.connect({
      cert,
      expected: d.expectedIdentities,
      upstream: d.upstream,
      authority: d.authority,
      poolKey: d.poolKey,
      headers,
      createSocket: () => connectTcp({
        address: d.upstream.ip, port: d.upstream.port, netns: pod.netnsFd, mark: p.mark, noDelay: true,
        ...(p.keepalive === undefined ? {} : { keepalive: p.keepalive }),
      }),
    });
    made.upstream(tunnel);
  } catch (err) {
    const e = err as Error & { flag?: ResponseFlag; status?: number };
    // No valid certificate of our own: refused, never presented expired.
    if (err instanceof IdentityError) p.certificates?.refused('outbound', 'unavailable');
    else if (err instanceof HboneError && err.code === HboneErrorCode.CERT_EXPIRED) p.certificates?.refused('outbound', 'expired');
    p.metrics.failed(labels(e.flag ?? 'CONNECT'));
    logFailed(p.access, f, e.message);
    socket.destroy();
    return;
  }
  const l = labels('-');
  p.metrics.opened(l);
  const r = await relay(socket, tunnel);
  p.metrics.closed(l, r.aToB, r.bToA, r.error);
  logComplete(p.access, f, { bytesSent: r.aToB, bytesRecv: r.bToA, durationMs: Date.now() - started, error: r.error?.message });
}
