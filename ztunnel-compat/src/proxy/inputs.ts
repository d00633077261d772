// SPDX-License-Identifier: Apache-2.0
// Everything a pod's proxy needs, passed in once (ztunnel's ProxyInputs).
import type { TcpKeepalive } from '@skein/bpf';
import type { Logger } from '../log.ts';
import type { SecretManager } from '../identity/manager.ts';
import type { CertificateMetrics } from '../identity/metrics.ts';
import type { ProxyState } from '../state/store.ts';
import type { ConnectionManager } from './connection-manager.ts';
import type { ConnectionGuard } from './guard.ts';
import type { Revocation } from './hbone/tls.ts';
import type { TcpMetrics } from './metrics.ts';

export interface ProxyInputs {
  state: ProxyState;
  secrets: SecretManager;
  /** Connections refused for want of a valid certificate. */
  certificates?: CertificateMetrics;
  connections: ConnectionManager;
  metrics: TcpMetrics;
  log: Logger;
  /** Access log (scope "access"). */
  access: Logger;
  network: string;
  /** CLUSTER_ID: the cluster named in the baggage of this node's connections. */
  clusterId: string;
  nodeName: string;
  /** SO_MARK of pod-side sockets (1337 in shared mode). */
  mark: number | undefined;
  /** LOCALHOST_APP_TUNNEL. */
  localhostAppTunnel: boolean;
  /** TRANSPARENT_NETWORK_POLICIES: HBONE to a workload dials its target port (decide/outbound.ts). */
  transparentNetworkPolicies?: boolean;
  /** KEEPALIVE_*: on pod-side and upstream sockets; undefined when disabled. */
  keepalive: TcpKeepalive | undefined;
  /** Catches, logs, counts and closes what a per-connection task throws (guard.ts). */
  guard: ConnectionGuard;
  /** CRL checks of HBONE peers (CRL_PATH); undefined without a CRL file. */
  revocation?: Revocation;
}
