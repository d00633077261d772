// SPDX-License-Identifier: Apache-2.0
// The parts of /config_dump that describe the process itself, in ztunnel's
// shapes (src/admin.rs ConfigDump): `version` is ztunnel's BuildInfo
// (src/version.rs), `config` its Config (src/config.rs, serde camelCase,
// Durations as {secs, nanos}), `staticConfig` the static file as parsed
// (src/xds.rs LocalConfig, empty lists when there is none), and each
// `workloadState` entry holds `state`, `connections` and `info` (istioctl's
// configdump api.go WorkloadState). Skein-only settings are extra keys.
import type { Config } from '../config.ts';
import { SELF_PORTS } from '../decide/outbound.ts';
import type { WorkloadInfo } from '../inpod/protocol.ts';
import { CONNECTION_WINDOW, MAX_FRAME, STREAM_WINDOW } from '../proxy/hbone/h2.ts';
import type { PodConnections } from '../proxy/connection-manager.ts';
import { version } from '../version.ts';

/** A Rust Duration as serde writes it. */
function duration(ms: number): { secs: number; nanos: number } {
  return { secs: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}

/** ztunnel's BuildInfo. Skein has no Rust; rustVersion names the runtime instead. */
export function buildInfo(): Record<string, string> {
  return {
    version,
    gitRevision: process.env.SKEIN_GIT_REVISION ?? 'unknown',
    rustVersion: `none (Node.js ${process.versions.node})`,
    buildStatus: 'unknown',
    gitTag: version,
  };
}

function rootCert(r: Config['xdsRootCa']): unknown {
  // serde of ztunnel's RootCert enum: {"File": path}, "Static" (bytes skipped), "Default".
  switch (r.kind) {
    case 'file': return { File: r.path };
    case 'pem': return 'Static';
    case 'system': return 'Default';
  }
}

/** ztunnel's Config, as config_dump shows it, from Skein's; secrets (the token) left out, as ztunnel skips `auth`. */
export function configSection(c: Config): Record<string, unknown> {
  const wildcard = (port: number): string => (c.ipv6Enabled ? `[::]:${port}` : `0.0.0.0:${port}`);
  const info = c.proxyWorkloadInfo;
  return {
    proxy: true,
    dnsProxy: c.dnsProxy,
    windowSize: STREAM_WINDOW,
    connectionWindowSize: CONNECTION_WINDOW,
    frameSize: MAX_FRAME,
    poolMaxStreamsPerConn: c.poolMaxStreamsPerConnection,
    poolUnusedReleaseTimeout: duration(c.poolUnusedReleaseTimeoutMs),
    adminAddr: `${c.adminAddress}:${c.adminPort}`,
    statsAddr: wildcard(c.statsPort),
    readinessAddr: wildcard(c.readinessPort),
    inboundAddr: wildcard(15008),
    inboundPlaintextAddr: wildcard(15006),
    outboundAddr: wildcard(15001),
    dnsProxyAddr: `127.0.0.1:${c.dnsProxyPort}`,
    illegalPorts: [...SELF_PORTS].sort((a, b) => a - b),
    network: c.network,
    localNode: c.nodeName === '' ? null : c.nodeName,
    proxyMode: c.proxyMode === 'shared' ? 'Shared' : 'Dedicated',
    proxyWorkloadInformation: info === undefined ? null : { name: info.name, namespace: info.namespace, serviceAccount: info.serviceAccount },
    clusterId: c.clusterId,
    clusterDomain: c.clusterDomain,
    caAddress: c.caAddress ?? null,
    caRootCert: rootCert(c.caRootCa),
    altCaHostname: c.altCaHostname ?? null,
    xdsAddress: c.xdsAddress ?? null,
    xdsRootCert: rootCert(c.xdsRootCa),
    altXdsHostname: c.altXdsHostname ?? null,
    preferedServiceNamespace: c.preferredServiceNamespace ?? null,
    secretTtl: duration(c.secretTtlSeconds * 1000),
    xdsOnDemand: c.xdsOnDemand,
    fakeCa: c.localCa,
    selfTerminationDeadline: duration(c.drainMs),
    proxyMetadata: c.istioMeta,
    // One JavaScript thread runs the data path, or the native engine's threads
    // (SKEIN_HBONE_ENGINE=native, ZTUNNEL_WORKER_THREADS) carry its HBONE.
    numWorkerThreads: c.hboneEngine === 'native' ? c.workerThreads : 1,
    requireOriginalSource: null,
    inpodUds: c.inpodUds,
    inpodPortReuse: c.inpodPortReuse,
    packetMark: c.packetMark ?? null,
    socketConfig: {
      keepaliveTime: duration(c.keepalive.timeSeconds * 1000), keepaliveInterval: duration(c.keepalive.intervalSeconds * 1000),
      keepaliveRetries: c.keepalive.retries, keepaliveEnabled: c.keepalive.enabled, userTimeoutEnabled: false,
    },
    xdsHeaders: Object.entries(c.xdsHeaders),
    caHeaders: Object.entries(c.caHeaders),
    localhostAppTunnel: c.localhostAppTunnel,
    transparentNetworkPolicies: c.transparentNetworkPolicies,
    ztunnelIdentity: c.podNamespace !== '' && c.serviceAccount !== '' ? `spiffe://${c.trustDomain}/ns/${c.podNamespace}/sa/${c.serviceAccount}` : null,
    ztunnelWorkload: null,
    ipv6Enabled: c.ipv6Enabled,
    // Skein's own settings.
    trustDomain: c.trustDomain,
    kernelFastpath: c.kernelFastpath,
    hboneEngine: c.hboneEngine,
    bpffsDir: c.bpffsDir,
    cgroupPath: c.cgroupPath ?? null,
    localXdsPath: c.localXdsPath ?? null,
  };
}

/** What the static file held (its YAML, parsed), or ztunnel's empty LocalConfig. */
export function staticConfigSection(doc: unknown): Record<string, unknown> {
  const d = doc !== null && typeof doc === 'object' && !Array.isArray(doc) ? doc as Record<string, unknown> : {};
  return { workloads: d.workloads ?? [], policies: d.policies ?? [], services: d.services ?? [] };
}

export interface PodEntry {
  /** The manager's state: 'running' is ztunnel's Up, anything else Pending. */
  state: string;
  info: WorkloadInfo;
  lastError?: string | undefined;
}

/** One workloadState entry: ztunnel's `state` Up or Pending, the pod's connections, its info (with the trust domain). */
export function workloadStateEntry(p: PodEntry, connections: PodConnections, trustDomain: string): Record<string, unknown> {
  return {
    state: p.state === 'running' ? 'Up' : 'Pending',
    connections,
    info: { name: p.info.name, namespace: p.info.namespace, serviceAccount: p.info.serviceAccount, trustDomain },
    ...(p.lastError === undefined ? {} : { error: p.lastError }),
  };
}
