// SPDX-License-Identifier: Apache-2.0
// Wires the daemon together (ztunnel's app.rs): configuration → state and its
// one updater → configuration sources (istiod over delta ADS, or a static
// file) → certificates → admin, metrics and readiness. Everything is passed
// in; nothing reaches for globals, so tests can run a whole daemon in-process.
import { Counter, Gauge } from 'prom-client';
import { hboneEngineUnavailable, openNetns } from '@skein/bpf';
import type { Config } from './config.ts';
import { startAdminServers, type AdminServers } from './admin/servers.ts';
import { Readiness } from './admin/readiness.ts';
import { buildInfo, configSection, staticConfigSection, workloadStateEntry } from './admin/config-dump.ts';
import { CaClient } from './identity/ca-client.ts';
import type { CertificateProvider } from './identity/certificate.ts';
import { CrlFile } from './identity/crl-file.ts';
import { PQC_GROUP } from './identity/key-exchange.ts';
import { LocalCa } from './identity/local-ca.ts';
import { Priority, SecretManager } from './identity/manager.ts';
import { scoped, type Logger } from './log.ts';
import { Metrics } from './metrics.ts';
import { DnsMetrics } from './dns/metrics.ts';
import { IdleSeries } from './metrics/idle-series.ts';
import { DnsProxy } from './dns/proxy.ts';
import { InpodMetrics } from './inpod/metrics.ts';
import { OnDemandDns } from './proxy/on-demand-dns.ts';
import { ProxyState } from './state/store.ts';
import { ProxyStateUpdater } from './state/updater.ts';
import { identityOf, STATIC_WORKLOAD_DEFAULTS } from './state/workload.ts';
import { readRoot, readToken } from './xds/channel.ts';
import { AdsClient } from './xds/client.ts';
import { applyLocalConfig, readLocalConfig } from './xds/local.ts';
import { buildNode } from './xds/node.ts';
import { version } from './version.ts';
import { WorkloadProxyManager } from './inpod/manager.ts';
import { ZdsClient } from './inpod/zds-client.ts';
import { ConnectionManager } from './proxy/connection-manager.ts';
import { ConnectionGuard } from './proxy/guard.ts';
import { HboneClient } from './proxy/hbone/client.ts';
import { NativeHboneClient } from './proxy/hbone/native-client.ts';
import { TcpMetrics } from './proxy/metrics.ts';
import { podProxyFactory } from './proxy/pod-proxy.ts';
import { crlRevocation } from './proxy/revocation.ts';
import { findSourceWorkload } from './proxy/source-workload.ts';
import { Accel, cleanupKernel } from './accel/index.ts';
import { decideKmod, readKmodFacts, type KmodFacts } from './accel/kmod.ts';
import type { FastpathState } from './accel/probe.ts';

/**
 * How long after the first configuration the kernel maps wait for istio-cni's
 * snapshot before they are rewritten without it (their pods then go to
 * userspace until enrolled).
 */
const ZDS_SNAPSHOT_WAIT_MS = 10_000;

export class StartupError extends Error {
  override name = 'StartupError';
  readonly code = 'SKEIN_STARTUP';
}

export interface App {
  readonly config: Config;
  readonly state: ProxyState;
  readonly secrets: SecretManager;
  readonly readiness: Readiness;
  readonly metrics: Metrics;
  readonly admin: AdminServers;
  readonly xds: AdsClient | undefined;
  /** In shared mode: the ZDS client and the pods it enrolled. */
  readonly zds: ZdsClient | undefined;
  readonly pods: WorkloadProxyManager | undefined;
  readonly connections: ConnectionManager;
  /** The kernel fast paths (always present; inactive ones say why). */
  readonly accel: Accel;
  configDump(): Record<string, unknown>;
  /**
   * Stops everything; idempotent. Open connections get the drain deadline
   * (config.drainMs unless `drainMs`) to finish. The kernel's pinned
   * programs and maps stay for the next daemon unless `cleanupKernel`.
   */
  shutdown(opts?: { cleanupKernel?: boolean; drainMs?: number }): Promise<void>;
}

export interface AppOptions {
  /** Overrides for the admin/stats/readiness bind addresses (tests use port 0). */
  ports?: { admin?: number; stats?: number; readiness?: number };
  onShutdownRequest?: () => void;
}

/** Fails early, naming the file, when a token or root cannot be read. */
function checkReadable(config: Config): void {
  const problems: string[] = [];
  const tryRead = (what: () => unknown): void => {
    try { what(); } catch (err) { problems.push((err as Error).message); }
  };
  if (config.xdsAddress !== undefined) {
    tryRead(() => readRoot(config.xdsRootCa));
    tryRead(() => readToken(config.authToken));
  }
  if (!config.localCa) {
    tryRead(() => readRoot(config.caRootCa));
    if (config.xdsAddress === undefined) tryRead(() => readToken(config.authToken));
  }
  if (problems.length > 0) throw new StartupError([...new Set(problems)].join('; '));
}

async function certificateProvider(config: Config, log: Logger): Promise<CertificateProvider> {
  if (config.localCa) {
    return LocalCa.open({
      dir: config.localCaDir,
      ...(config.localCaCert === undefined ? {} : { certPath: config.localCaCert }),
      ...(config.localCaKey === undefined ? {} : { keyPath: config.localCaKey }),
      ttlSeconds: config.secretTtlSeconds,
      logger: scoped(log, 'ca'),
    });
  }
  return new CaClient({
    address: config.caAddress ?? '',
    rootCa: config.caRootCa,
    token: config.authToken,
    ...(config.altCaHostname === undefined ? {} : { altHostname: config.altCaHostname }),
    clusterId: config.clusterId,
    headers: config.caHeaders,
    impersonate: config.proxyMode === 'shared',
    ttlSeconds: config.secretTtlSeconds,
    tls12: config.tls12Enabled,
    pqc: config.pqc,
    logger: scoped(log, 'ca'),
  });
}

export async function startApp(config: Config, log: Logger, options: AppOptions = {}): Promise<App> {
  checkReadable(config);
  // CRL_PATH: peer chains are checked against the file, reloaded when it
  // changes. Read before anything starts: a bad file at start stops the start.
  const crls = config.crlPath === undefined ? undefined : new CrlFile(config.crlPath, { logger: scoped(log, 'crl') });
  const metrics = new Metrics(process.env.ISTIO_VERSION ?? `skein-${version}`);
  const readiness = new Readiness();
  const state = new ProxyState({ onListenerError: (err) => { log.error({ scope: 'state', err }, 'state listener failed'); } });
  const updater = new ProxyStateUpdater(state);

  // Certificates: prefetched for HBONE workloads on this node, dropped when
  // the last workload of an identity leaves (reference §3).
  const provider = await certificateProvider(config, log);
  // Made before the SecretManager: a forgotten identity's credential leaves the engine too.
  const engine = chooseHboneEngine(config, readKmodFacts());
  const secrets = new SecretManager({
    provider, logger: scoped(log, 'ca'), metrics: metrics.certificates,
    onEvent: (e) => { if (e.type === 'forget') engine.client?.forgetIdentity(e.identity); },
  });
  state.onChange((change) => {
    for (const uid of change.workloads.removed) secrets.untrackWorkload(uid);
    for (const uid of change.workloads.added) {
      const w = state.workloads.byUid(uid);
      if (w === undefined) continue;
      const local = config.nodeName !== '' && w.node === config.nodeName;
      if (local && (w.protocol === 'HBONE' || w.nativeTunnel)) {
        secrets.trackWorkload(uid, identityOf(w));
      } else {
        secrets.untrackWorkload(uid);
      }
    }
  });

  let staticConfig = false;
  let staticDocument: unknown;
  if (config.localXdsPath !== undefined || config.localXds !== undefined) {
    const cfg = readLocalConfig(config.localXdsPath !== undefined ? { path: config.localXdsPath } : { inline: config.localXds ?? '' });
    // A static file's missing trust domain stays empty, as in ztunnel (its LocalWorkload's serde defaults).
    const local = new ProxyStateUpdater(state, { workloadDefaults: STATIC_WORKLOAD_DEFAULTS });
    applyLocalConfig(cfg, { address: local.addressHandler, authorization: local.authorizationHandler });
    staticConfig = true;
    staticDocument = cfg.document;
    log.info({ scope: 'xds', workloads: state.workloads.count, services: state.services.count, policies: state.policies.size }, 'static config loaded');
  }

  let xds: AdsClient | undefined;
  if (config.xdsAddress !== undefined) {
    const done = readiness.register('state manager');
    const xlog = scoped(log, 'xds');
    xds = new AdsClient({
      channel: {
        address: config.xdsAddress, root: config.xdsRootCa, altHostname: config.altXdsHostname, token: config.authToken,
        clusterId: config.clusterId, headers: config.xdsHeaders, tls12: config.tls12Enabled, pqc: config.pqc,
      },
      node: buildNode(config),
      handlers: [updater.addressHandler, updater.authorizationHandler],
      metrics: metrics.xds,
    });
    xds.on('ready', () => { done(); xlog.info({}, 'initial xDS configuration received'); });
    xds.on('nack', (typeUrl: string, nonce: string, message: string) => { xlog.warn({ typeUrl, nonce, message }, 'rejected xDS resources (NACK)'); });
    xds.on('disconnected', (err: Error) => { xlog.warn({ err: err.message }, 'xDS stream closed; reconnecting'); });
    xds.start();
  }
  // Start-up order (ztunnel's): nothing on the data path may act on an empty
  // state, so pods are taken from istio-cni, and the kernel maps rewritten,
  // only once the first configuration is in. Static config is in already.
  const stateReady = xds === undefined ? Promise.resolve() : xds.whenReady();
  let stopping = false;

  // The data path (shared mode): istio-cni hands pods over ZDS; each gets its
  // listeners, certificate and HBONE server (proxy/pod-proxy.ts).
  const connections = new ConnectionManager(state);
  state.onChange((change) => {
    if (change.policies.added.length + change.policies.removed.length + change.workloads.added.length > 0) {
      const closed = connections.recheck();
      if (closed > 0) log.info({ scope: 'proxy', closed }, 'closed connections no longer allowed by policy');
    }
  });
  let zds: ZdsClient | undefined;
  const idleSeries = new IdleSeries({ evictAfterMs: config.statsEvictionMs });
  const tcpMetrics = new TcpMetrics(metrics.registry, idleSeries);
  // The pod manager tells the kernel side about pods, which is built after it.
  const onPods = { changed: (): void => undefined };
  const proxyReady = readiness.register('workload proxy manager');
  const revocation = crls === undefined ? undefined : crlRevocation(crls, metrics.registry, () => {
    const st = engine.client?.stats();
    return { source: st?.crlRejectionsSource ?? 0, destination: st?.crlRejectionsDestination ?? 0 };
  });
  if (crls !== undefined && engine.client !== undefined) {
    // The engine checks its own handshakes and sessions against the same
    // CRLs; one it refuses is refused for both (the last good set stays).
    const client = engine.client;
    client.setCrls(crls.current.ders);
    crls.guard((set) => { client.setCrls(set.ders); });
  }
  const hbone = new HboneClient({
    maxStreams: config.poolMaxStreamsPerConnection, idleTimeoutMs: config.poolUnusedReleaseTimeoutMs, tls12: config.tls12Enabled, pqc: config.pqc,
    ...(revocation === undefined ? {} : { revocation }),
  });
  if (config.hboneEngine !== engine.active) log.warn({ scope: 'proxy', reason: engine.reason }, 'the native HBONE engine is unavailable; HBONE runs in JavaScript');
  else log.info({ scope: 'proxy', engine: engine.active }, 'HBONE engine (outbound and the 15008 server)');
  new Gauge({ name: 'skein_hbone_engine', help: 'The HBONE engine in use (1): native or js; see config_dump hboneEngine for why', labelNames: ['engine'] as const, registers: [metrics.registry] })
    .set({ engine: engine.active }, 1);
  const kmodTunnels = new Counter({
    name: 'skein_kmod_hbone_tunnels_total', help: 'Outbound tunnels and the kernel module (kmod/): handed_over to it, fallback (frames it gave back to userspace), declined (its socket would not take them; carried in userspace)',
    labelNames: ['result'] as const, registers: [metrics.registry],
    collect: () => {
      const st = engine.client?.stats();
      kmodTunnels.reset();
      kmodTunnels.inc({ result: 'handed_over' }, st?.kmodTunnels ?? 0);
      kmodTunnels.inc({ result: 'fallback' }, st?.kmodFallbacks ?? 0);
      kmodTunnels.inc({ result: 'declined' }, st?.kmodDeclined ?? 0);
    },
  });
  const deps = {
    state, secrets, certificates: metrics.certificates, connections, hbone, nativeHbone: engine.client, log: scoped(log, 'proxy'), access: scoped(log, 'access'),
    onDemandDns: new OnDemandDns({ resolvConf: config.dnsResolvConf, ipv6: config.ipv6Enabled, registry: metrics.registry, idle: idleSeries }),
    metrics: tcpMetrics, network: config.network, clusterId: config.clusterId, nodeName: config.nodeName, mark: config.packetMark, localhostAppTunnel: config.localhostAppTunnel,
    transparentNetworkPolicies: config.transparentNetworkPolicies,
    keepalive: config.keepalive.enabled ? config.keepalive : undefined, guard: new ConnectionGuard({ registry: metrics.registry, log: scoped(log, 'proxy'), access: scoped(log, 'access') }),
    ...(revocation === undefined ? {} : { revocation }),
  };
  // istio-cni sends every enrolled pod's port-53 traffic to 15053 when its DNS capture is on (the default).
  const dns = config.dnsProxy ? new DnsProxy({
    state, metrics: new DnsMetrics(metrics.registry, idleSeries), log: scoped(log, 'dns'), clusterDomain: config.clusterDomain,
    ipv6: config.ipv6Enabled, mark: config.packetMark, resolvConf: config.dnsResolvConf, preferredNamespace: config.preferredServiceNamespace,
  }) : undefined;
  const inpodMetrics = new InpodMetrics(metrics.registry);
  const pods = new WorkloadProxyManager({ factory: podProxyFactory(deps, config, dns), onChange: () => { onPods.changed(); }, events: inpodMetrics });
  inpodMetrics.countFrom(() => ({ running: pods.running().length, pending: pods.pending }));
  // Not ready while any enrolled pod's proxy is still pending (reference §4.2).
  readiness.watch('workload proxy manager', () => pods.pending > 0);
  const kernel = new Accel({ config, state, pods, kmod: engine.kmod, metrics: tcpMetrics, registry: metrics.registry, log, access: scoped(log, 'access') });
  onPods.changed = () => { kernel.schedule(); };
  // Every change reprojects the maps, then closes what they no longer allow.
  state.onChange(() => { kernel.schedule(); });
  if (config.proxyMode === 'shared') {
    const z = new ZdsClient({ path: config.inpodUds, manager: pods, log: scoped(log, 'inpod') });
    zds = z;
    z.once('snapshot', proxyReady);
    // Until the pods are known too, the maps an earlier daemon pinned keep
    // steering (its flows survive a restart); a CNI that never answers does
    // not keep them stale for longer than ZDS_SNAPSHOT_WAIT_MS.
    void stateReady.then(() => {
      if (stopping) return;
      log.info({ scope: 'inpod' }, 'initial configuration in place; taking pods from istio-cni');
      z.start();
      const timer = setTimeout(() => { kernel.start('no ZDS snapshot yet'); }, ZDS_SNAPSHOT_WAIT_MS);
      timer.unref();
      z.once('snapshot', () => { clearTimeout(timer); kernel.start(); });
    });
  } else {
    // Dedicated: one workload, whose netns is ours; the redirect to 15001 is the operator's (reference §4.5).
    const info = config.proxyWorkloadInfo;
    if (info === undefined) throw new StartupError('PROXY_MODE=dedicated needs PROXY_WORKLOAD_INFO');
    const startDedicated = async (): Promise<void> => {
      try {
        await pods.add(`dedicated/${info.namespace}/${info.name}`, info, openNetns('/proc/self/ns/net'));
      } catch (err) {
        // Nothing may keep the process alive after a failed start.
        xds?.stop();
        await pods.close();
        throw new StartupError(`dedicated mode: cannot start ${info.namespace}/${info.name}'s listeners: ${(err as Error).message}`);
      }
      kernel.start();
      proxyReady();
    };
    if (xds === undefined) {
      await startDedicated();
    } else {
      void stateReady.then(() => (stopping ? undefined : startDedicated())).catch((err: unknown) => {
        log.error({ scope: 'app', err: (err as Error).message }, 'cannot start the dedicated proxy; shutting down');
        options.onShutdownRequest?.();
      });
    }
  }

  const configDump = (): Record<string, unknown> => {
    const s = state.configDump();
    return {
      workloads: s.workloads,
      services: s.services,
      policies: s.policies,
      stagedServices: s.stagedServices,
      staticConfig: staticConfigSection(staticDocument),
      version: buildInfo(),
      config: configSection(config),
      certificates: secrets.certificates(),
      kernelFastpaths: kernel.dump(),
      hboneEngine: { configured: config.hboneEngine, active: engine.active, ...(engine.reason === undefined ? {} : { reason: engine.reason }), ...(engine.client === undefined ? {} : { stats: engine.client.stats() }) },
      workloadState: Object.fromEntries(pods.status().map((p) => [p.uid, workloadStateEntry(p, connections.byPod(p.uid), findSourceWorkload(state, config.nodeName, p.info)?.trustDomain ?? config.trustDomain)])),
    };
  };

  let closing: Promise<void> | undefined;
  const admin = await startAdminServers({
    log,
    metrics,
    readiness,
    configDump,
    shutdown: () => { options.onShutdownRequest?.(); },
  }, {
    admin: { host: config.adminAddress, port: options.ports?.admin ?? config.adminPort },
    stats: { host: '::', port: options.ports?.stats ?? config.statsPort },
    readiness: { host: '::', port: options.ports?.readiness ?? config.readinessPort },
  });
  log.info({ scope: 'app', admin: admin.ports.admin, stats: admin.ports.stats, readiness: admin.ports.readiness, mode: staticConfig ? 'static' : 'xds' }, 'skein started');

  // The node's own identity, when it has one, is wanted from the start.
  if (config.podNamespace !== '' && config.serviceAccount !== '') {
    secrets.fetch({ trustDomain: config.trustDomain, namespace: config.podNamespace, serviceAccount: config.serviceAccount }, Priority.Warmup)
      .catch((err: unknown) => { log.warn({ scope: 'ca', err: (err as Error).message }, 'own certificate not available yet'); });
  }

  return {
    config, state, secrets, readiness, metrics, admin, xds, zds, pods, connections, accel: kernel, configDump,
    shutdown: (opts = {}) => {
      closing ??= (async () => {
        stopping = true;
        xds?.stop();
        zds?.stop();
        await pods.close(opts.drainMs ?? config.drainMs);
        kernel.close();
        if (opts.cleanupKernel === true) cleanupKernel(config.bpffsDir);
        await hbone.close(1000);
        engine.client?.close();
        secrets.close();
        crls?.close();
        idleSeries.close();
        await admin.close();
        log.info({ scope: 'app' }, 'skein stopped');
      })();
      return closing;
    },
  };
}

/** The HBONE engine (outbound and 15008): native when asked for and able, else JavaScript, and why. */
function chooseHboneEngine(c: Config, kmodFacts: KmodFacts): { active: 'native' | 'js'; client?: NativeHboneClient; reason?: string; kmod: FastpathState } {
  const js = (reason?: string): { active: 'js'; reason?: string; kmod: FastpathState } => ({
    active: 'js', ...(reason === undefined ? {} : { reason }), kmod: decideKmod(c.kernelFastpath, kmodFacts, { active: false, reason: reason ?? 'SKEIN_HBONE_ENGINE=js' }),
  });
  if (c.hboneEngine === 'js') return js();
  // The engine speaks TLS 1.3 only, as ztunnel by default.
  if (c.tls12Enabled) return js('TLS12_ENABLED is set; the native engine speaks TLS 1.3 only');
  const missing = hboneEngineUnavailable();
  if (missing !== undefined) return js(missing);
  // The module carries the engine's outbound tunnels when the probe found it and kTLS;
  // not under CRLs: a reload could not reach a tunnel the kernel carries.
  const kmod = c.crlPath === undefined ? decideKmod(c.kernelFastpath, kmodFacts, { active: true }) : { active: false, reason: 'CRL_PATH is set: CRL re-checks need the tunnels in the engine' };
  return {
    active: 'native', kmod,
    client: new NativeHboneClient({
      workers: c.workerThreads, maxStreams: c.poolMaxStreamsPerConnection, idleTimeoutMs: c.poolUnusedReleaseTimeoutMs, kmod: kmod.active,
      ...(c.pqc ? { groups: PQC_GROUP } : {}),
    }),
  };
}
