// SPDX-License-Identifier: Apache-2.0
// Kernel flow events → the same istio_tcp_* metrics and access-log lines as a
// userspace connection, with reporter "source" (the destination of a
// no-tunnel flow has no node proxy of ours). A kernel flow is plain TCP, so
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
  podOf: (podId: number) => Workload | undefined;
  serviceOf: (svcId: number) => Service | undefined;
}

export function recordKernelEvent(d: TelemetryDeps, ev: KernelEvent): void {
  const source = d.podOf(ev.podId);
  const service = d.serviceOf(ev.svcId);
  const destination = d.state.workloads.byAddress(d.network, ev.dst.ip);
  const labels = (flag: ResponseFlag): ReturnType<typeof tcpLabels> => tcpLabels({
    reporter: 'source', source, sourceIdentity: source === undefined ? undefined : identityOf(source), destination, destinationService: service, mtls: false, flag,
  });
  const fields = {
    ...accessFields({
      direction: 'outbound', srcAddr: hostPort(ev.src.ip, ev.src.port), source, srcIdentity: undefined,
      dstAddr: hostPort(ev.dst.ip, ev.dst.port), destination, service,
    }),
    fastpath: 'connect-lb',
  };
  switch (ev.kind) {
    case 'open':
      d.metrics.opened(labels('-'));
      return;
    case 'close':
      d.metrics.closed(labels('-'), ev.bytesSent, ev.bytesRecv);
      logComplete(d.access, fields, { bytesSent: ev.bytesSent, bytesRecv: ev.bytesRecv, durationMs: ev.durationMs });
      return;
    case 'fail':
      d.metrics.failed(labels('CONNECT'));
      logFailed(d.access, fields, `connect to ${hostPort(ev.dst.ip, ev.dst.port)} failed`);
      return;
  }
}
