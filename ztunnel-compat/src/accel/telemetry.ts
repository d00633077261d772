// SPDX-License-Identifier: Apache-2.0
// Kernel flow events → the same istio_tcp_* metrics and access-log lines as a
// userspace connection. A no-tunnel flow is reported by the source only (its
// destination has no node proxy of ours); a same-node flow by both, as the
// two ends of an HBONE connection would be, the destination with the source
// pod's enrolled identity as its principal. A kernel flow carries no TLS, so
// connection_security_policy is "unknown", exactly as for plain TCP through
// userspace; `fastpath` in the access log says which path carried it.
import { identityOf, type Workload } from '../state/workload.ts';
import type { Service } from '../state/service.ts';
import type { ProxyState } from '../state/store.ts';
import type { Logger } from '../log.ts';
import { accessFields, logComplete, logFailed } from '../proxy/access-log.ts';
import { tcpLabels, type ResponseFlag, type TcpMetrics } from '../proxy/metrics.ts';
import { hostPort } from '../decide/outbound.ts';
import type { KernelEvent } from './layout.ts';

export interface TelemetryDeps {
  state: ProxyState;
  network: string;
  metrics: TcpMetrics;
  access: Logger;
  /** The workload of an enrolled pod (source, or same-node destination). */
  podOf: (podId: number) => Workload | undefined;
  serviceOf: (svcId: number) => Service | undefined;
}

export function recordKernelEvent(d: TelemetryDeps, ev: KernelEvent): void {
  const source = d.podOf(ev.podId);
  const sameNode = ev.dstPodId !== 0;
  const service = d.serviceOf(ev.svcId);
  const destination = sameNode ? d.podOf(ev.dstPodId) : d.state.workloads.byAddress(d.network, ev.dst.ip);
  const sourceIdentity = source === undefined ? undefined : identityOf(source);
  const reporters = sameNode ? (['source', 'destination'] as const) : (['source'] as const);
  const labels = (reporter: 'source' | 'destination', flag: ResponseFlag): ReturnType<typeof tcpLabels> => tcpLabels({
    reporter, source, sourceIdentity, destination, destinationService: service, mtls: false, flag,
  });
  const fields = {
    ...accessFields({
      direction: 'outbound', srcAddr: hostPort(ev.src.ip, ev.src.port), source, srcIdentity: sameNode ? sourceIdentity : undefined,
      dstAddr: hostPort(ev.dst.ip, ev.dst.port), destination, service,
    }),
    fastpath: sameNode ? 'same-node' : 'connect-lb',
  };
  switch (ev.kind) {
    case 'open':
      for (const r of reporters) d.metrics.opened(labels(r, '-'));
      return;
    case 'close':
      // The destination received what the source sent.
      d.metrics.closed(labels('source', '-'), ev.bytesSent, ev.bytesRecv);
      if (sameNode) d.metrics.closed(labels('destination', '-'), ev.bytesSent, ev.bytesRecv);
      logComplete(d.access, fields, { bytesSent: ev.bytesSent, bytesRecv: ev.bytesRecv, durationMs: ev.durationMs });
      return;
    case 'fail':
      d.metrics.failed(labels('source', 'CONNECT'));
      logFailed(d.access, fields, `connect to ${hostPort(ev.dst.ip, ev.dst.port)} failed`);
      return;
  }
}
