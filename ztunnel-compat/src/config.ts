// SPDX-License-Identifier: Apache-2.0
// Configuration from the environment variables ztunnel reads (reference §9.1),
// plus a few SKEIN_* ones. Pure: parseConfig(env) validates everything at once
// and reports every bad value with the variable's name.
import { parse as parseYaml } from 'yaml';
import { availableParallelism } from 'node:os';
import { parseDurationMs } from './config/duration.ts';
import { workerThreads } from './config/worker-threads.ts';
import { pqcUnavailable } from './identity/key-exchange.ts';

export type RootCaSource = { kind: 'file'; path: string } | { kind: 'pem'; pem: string } | { kind: 'system' };
export type TokenSource = { kind: 'file'; path: string } | { kind: 'literal'; token: string };
export type ProxyMode = 'shared' | 'dedicated';
/** tracing's levels, as RUST_LOG and /logging write them. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'off'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface WorkloadInfo { namespace: string; name: string; serviceAccount: string }

export interface Config {
  /** undefined: xDS disabled (XDS_ADDRESS=""); static config must then come from LOCAL_XDS*. */
  xdsAddress: string | undefined;
  caAddress: string | undefined;
  xdsRootCa: RootCaSource;
  caRootCa: RootCaSource;
  altXdsHostname: string | undefined;
  altCaHostname: string | undefined;
  authToken: TokenSource;
  xdsHeaders: Record<string, string>;
  caHeaders: Record<string, string>;
  clusterId: string;
  clusterDomain: string;
  network: string;
  nodeName: string;
  podName: string;
  podNamespace: string;
  instanceIp: string;
  serviceAccount: string;
  trustDomain: string;
  /** ISTIO_META_<K> → K (node metadata). */
  istioMeta: Record<string, string>;
  /** ISTIO_METAJSON_<K> → parsed JSON. */
  istioMetaJson: Record<string, unknown>;
  proxyMode: ProxyMode;
  proxyWorkloadInfo: WorkloadInfo | undefined;
  inpodUds: string;
  inpodPortReuse: boolean;
  /** SO_MARK for pod-side sockets; required (1337) in shared mode. */
  packetMark: number | undefined;
  localXdsPath: string | undefined;
  localXds: string | undefined;
  xdsOnDemand: boolean;
  /**
   * CRL_PATH (ztunnel src/config.rs; Istio's chart sets it, to the mounted
   * ConfigMap istio-ca-crl, with peerCaCrl.enabled): a CRL file peer chains
   * are checked against. Undefined: no CRL checks.
   */
  crlPath: string | undefined;
  /** Use the built-in local CA instead of istiod's (FAKE_CA=true, or CA_ADDRESS=""). */
  localCa: boolean;
  localCaDir: string;
  localCaCert: string | undefined;
  localCaKey: string | undefined;
  secretTtlSeconds: number;
  ipv6Enabled: boolean;
  tls12Enabled: boolean;
  /** COMPLIANCE_POLICY=pqc: every TLS connection uses the X25519MLKEM768 key exchange only (identity/key-exchange.ts). */
  pqc: boolean;
  /** PREFERED_SERVICE_NAMESPACE (ztunnel's spelling): the DNS proxy's choice among same-named services after the client's namespace. */
  preferredServiceNamespace: string | undefined;
  /** TRANSPARENT_NETWORK_POLICIES: HBONE to a workload dials its target port, not 15008 (for Calico's policy). */
  transparentNetworkPolicies: boolean;
  /** LOCALHOST_APP_TUNNEL: reach a pod's PROXY app tunnel from loopback (ztunnel's default) rather than from the client's IP. */
  localhostAppTunnel: boolean;
  adminAddress: string;
  adminPort: number;
  statsPort: number;
  readinessPort: number;
  logLevel: LogLevel;
  /** RUST_LOG's per-target directives (`access=off`, `ztunnel::proxy=debug`) by log scope (log.ts). */
  logTargets: Record<string, LogLevel>;
  logFormat: 'plain' | 'json';
  kernelFastpath: 'auto' | 'off';
  /** Where the kernel programs, maps and links are pinned (bpffs); they outlive the daemon. */
  bpffsDir: string;
  /** SKEIN_SAME_NODE: same-node pod-to-pod in the kernel, or over HBONE for those who require TLS everywhere. */
  sameNode: 'kernel' | 'hbone';
  /** The cgroup v2 directory whose processes (the pods) the programs apply to; undefined: the cgroup2 mount. */
  cgroupPath: string | undefined;
  poolMaxStreamsPerConnection: number;
  poolUnusedReleaseTimeoutMs: number;
  /**
   * SKEIN_HBONE_ENGINE: HBONE both ways on the native engine (bpf/src/hbone,
   * docs/native-engine.md; the default) or in JavaScript (`js`, the
   * reference). `native` falls back to `js` when the engine is not built or
   * TLS12_ENABLED is set.
   */
  hboneEngine: 'native' | 'js';
  /**
   * ZTUNNEL_WORKER_THREADS: the native engine's threads, as ztunnel sizes its
   * workers (a number, 0 for every CPU, or N% of the CPUs; by default the
   * pod's CPU limit or a quarter of the CPUs, at least 2;
   * config/worker-threads.ts).
   */
  workerThreads: number;
  /** How long a shutdown lets open connections finish before closing them (ztunnel's drain deadline). */
  drainMs: number;
  /** The per-pod DNS proxy istio-cni's DNS capture sends port 53 to (ISTIO_META_DNS_CAPTURE, default on). */
  dnsProxy: boolean;
  /** Where in each pod it listens (ISTIO_META_DNS_PROXY_ADDR, default localhost:15053). */
  dnsProxyPort: number;
  /** The resolv.conf whose nameservers get the queries Skein does not answer (SKEIN_DNS_RESOLV_CONF). */
  dnsResolvConf: string;
  /** TCP keepalive on pod-side and upstream sockets (KEEPALIVE_*). */
  keepalive: KeepaliveConfig & { enabled: boolean };
  /**
   * SKEIN_STATS_EVICTION_INTERVAL: the istio_tcp_* series of a label set
   * with no open connection and nothing new for this long are dropped, and
   * the DNS ones with nothing new (0: kept for the daemon's life, as
   * ztunnel keeps them). Default 1h.
   */
  statsEvictionMs: number;
}

/** ztunnel's SocketConfig keepalive_* (src/config.rs), in whole seconds as the kernel takes them. */
export interface KeepaliveConfig {
  timeSeconds: number;
  intervalSeconds: number;
  retries: number;
}

/**
 * ztunnel's SocketConfig::default() (src/config.rs): keepalive enabled,
 * 180 s idle, 180 s between probes, 9 probes.
 */
export const DEFAULT_KEEPALIVE: KeepaliveConfig = { timeSeconds: 180, intervalSeconds: 180, retries: 9 };

/** An hour: well past any scrape interval and dashboard rate window. */
export const DEFAULT_STATS_EVICTION_MS = 3_600_000;

export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly code = 'SKEIN_CONFIG';
  readonly problems: readonly string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.problems = problems;
  }
}

/** The SKEIN_* variables Skein knows; any other is a typo, and an error. */
export const SKEIN_VARS = ['SKEIN_LOCAL_CA_DIR', 'SKEIN_LOCAL_CA_CERT', 'SKEIN_LOCAL_CA_KEY', 'SKEIN_KERNEL_FASTPATH', 'SKEIN_BPFFS_DIR', 'SKEIN_CGROUP_PATH', 'SKEIN_SAME_NODE', 'SKEIN_ADMIN_ADDRESS', 'SKEIN_DNS_RESOLV_CONF', 'SKEIN_HBONE_ENGINE', 'SKEIN_STATS_EVICTION_INTERVAL', 'SKEIN_GIT_REVISION'] as const;

const DEFAULT_ROOT = './var/run/secrets/istio/root-cert.pem';
const DEFAULT_TOKEN = './var/run/secrets/tokens/istio-token';

type Env = Readonly<Record<string, string | undefined>>;

export function parseConfig(env: Env): Config {
  const problems: string[] = [];
  const p = new Reader(env, problems);

  for (const k of Object.keys(env)) {
    if (k.startsWith('SKEIN_') && !(SKEIN_VARS as readonly string[]).includes(k)) {
      problems.push(`${k}: unknown SKEIN_ variable (known: ${SKEIN_VARS.join(', ')})`);
    }
  }

  const inCluster = env.KUBERNETES_SERVICE_HOST !== undefined;
  const defaultAddr = inCluster ? 'https://istiod.istio-system.svc:15012' : 'https://localhost:15012';
  const proxyConfig = p.proxyConfig();

  const localXdsPath = p.str('LOCAL_XDS_PATH');
  const localXds = p.str('LOCAL_XDS');
  if (localXdsPath !== undefined && localXds !== undefined) problems.push('LOCAL_XDS_PATH and LOCAL_XDS: set only one');

  const xdsAddress = p.address('XDS_ADDRESS', proxyConfig.discoveryAddress ?? defaultAddr);
  const fakeCa = p.bool('FAKE_CA', false);
  const caAddress = p.address('CA_ADDRESS', defaultAddr);
  const proxyMode = p.oneOf('PROXY_MODE', ['shared', 'dedicated'] as const, 'shared');
  const workloadInfo = p.workloadInfo('PROXY_WORKLOAD_INFO');
  if (proxyMode === 'dedicated' && workloadInfo === undefined) problems.push('PROXY_WORKLOAD_INFO: required with PROXY_MODE=dedicated (ns/name/sa)');
  if (xdsAddress === undefined && localXdsPath === undefined && localXds === undefined) {
    problems.push('XDS_ADDRESS is empty but neither LOCAL_XDS_PATH nor LOCAL_XDS is set: there would be no configuration source');
  }

  const meta: Record<string, string> = {};
  const metaJson: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) continue;
    if (k.startsWith('ISTIO_METAJSON_')) {
      try { metaJson[k.slice('ISTIO_METAJSON_'.length)] = JSON.parse(v); } catch { problems.push(`${k}: not valid JSON`); }
    } else if (k.startsWith('ISTIO_META_')) {
      meta[k.slice('ISTIO_META_'.length)] = v;
    }
  }
  for (const [k, v] of Object.entries(proxyConfig.proxyMetadata ?? {})) {
    if (k.startsWith('ISTIO_META_') && !(k.slice(11) in meta)) meta[k.slice(11)] = v;
  }

  const config: Config = {
    xdsAddress,
    caAddress: fakeCa ? undefined : caAddress,
    xdsRootCa: p.rootCa('XDS_ROOT_CA'),
    caRootCa: p.rootCa('CA_ROOT_CA'),
    altXdsHostname: p.str('ALT_XDS_HOSTNAME'),
    altCaHostname: p.str('ALT_CA_HOSTNAME'),
    authToken: p.token('AUTH_TOKEN'),
    xdsHeaders: p.prefixed('XDS_HEADER_'),
    caHeaders: p.prefixed('CA_HEADER_'),
    clusterId: env.ISTIO_META_CLUSTER_ID ?? env.CLUSTER_ID ?? 'Kubernetes',
    clusterDomain: p.str('CLUSTER_DOMAIN') ?? 'cluster.local',
    network: env.NETWORK ?? '',
    nodeName: env.NODE_NAME ?? '',
    podName: env.POD_NAME ?? '',
    podNamespace: env.POD_NAMESPACE ?? '',
    instanceIp: p.ip('INSTANCE_IP') ?? '',
    serviceAccount: env.SERVICE_ACCOUNT ?? '',
    trustDomain: p.str('TRUST_DOMAIN') ?? 'cluster.local',
    istioMeta: meta,
    istioMetaJson: metaJson,
    proxyMode,
    proxyWorkloadInfo: workloadInfo,
    inpodUds: p.str('INPOD_UDS') ?? '/var/run/ztunnel/ztunnel.sock',
    inpodPortReuse: p.bool('INPOD_PORT_REUSE', true),
    packetMark: p.int('PACKET_MARK', 0, 0xffffffff) ?? (proxyMode === 'shared' ? 1337 : undefined),
    localXdsPath,
    localXds,
    xdsOnDemand: p.bool('XDS_ON_DEMAND', false),
    crlPath: p.str('CRL_PATH'),
    localCa: fakeCa || caAddress === undefined,
    localCaDir: p.str('SKEIN_LOCAL_CA_DIR') ?? '/var/run/skein/ca',
    localCaCert: p.str('SKEIN_LOCAL_CA_CERT'),
    localCaKey: p.str('SKEIN_LOCAL_CA_KEY'),
    secretTtlSeconds: Math.round((p.duration('SECRET_TTL') ?? 86_400_000) / 1000),
    ipv6Enabled: p.bool('IPV6_ENABLED', true),
    tls12Enabled: p.bool('TLS12_ENABLED', false),
    // ztunnel compares the whole value with "pqc"; other policies (fips-140-2) are its FIPS build's.
    pqc: p.str('COMPLIANCE_POLICY') === 'pqc',
    localhostAppTunnel: p.bool('LOCALHOST_APP_TUNNEL', true),
    transparentNetworkPolicies: p.bool('TRANSPARENT_NETWORK_POLICIES', false),
    preferredServiceNamespace: p.str('PREFERED_SERVICE_NAMESPACE'),
    adminAddress: p.ip('SKEIN_ADMIN_ADDRESS') ?? '127.0.0.1',
    adminPort: proxyConfig.proxyAdminPort ?? 15000,
    statsPort: proxyConfig.statsPort ?? 15020,
    readinessPort: 15021,
    logLevel: p.logLevel('RUST_LOG'),
    logTargets: p.logTargets('RUST_LOG'),
    logFormat: p.oneOf('LOG_FORMAT', ['plain', 'json'] as const, 'plain'),
    kernelFastpath: p.oneOf('SKEIN_KERNEL_FASTPATH', ['auto', 'off'] as const, 'auto'),
    // One directory per node name: a lab runs several "nodes" on one kernel.
    bpffsDir: p.str('SKEIN_BPFFS_DIR') ?? `/sys/fs/bpf/skein/${(env.NODE_NAME ?? '') === '' ? 'node' : env.NODE_NAME ?? ''}`,
    cgroupPath: p.str('SKEIN_CGROUP_PATH'),
    sameNode: p.oneOf('SKEIN_SAME_NODE', ['kernel', 'hbone'] as const, 'kernel'),
    poolMaxStreamsPerConnection: p.int('POOL_MAX_STREAMS_PER_CONNECTION', 1, 65535) ?? 100,
    poolUnusedReleaseTimeoutMs: timerMs(p.duration('POOL_UNUSED_RELEASE_TIMEOUT') ?? 300_000),
    hboneEngine: p.oneOf('SKEIN_HBONE_ENGINE', ['native', 'js'] as const, 'native'),
    workerThreads: engineThreads(p, proxyConfig.concurrency),
    drainMs: timerMs(p.duration('CONNECTION_TERMINATION_DEADLINE') ?? drainFromGrace(p.int('TERMINATION_GRACE_PERIOD_SECONDS', 0, 86_400))),
    dnsProxy: (meta.DNS_CAPTURE ?? 'true').toLowerCase() === 'true',
    dnsProxyPort: dnsProxyPort(meta.DNS_PROXY_ADDR, problems),
    dnsResolvConf: p.str('SKEIN_DNS_RESOLV_CONF') ?? '/etc/resolv.conf',
    keepalive: keepaliveConfig(p),
    statsEvictionMs: p.duration('SKEIN_STATS_EVICTION_INTERVAL') ?? DEFAULT_STATS_EVICTION_MS,
  };
  if ((config.localCaCert === undefined) !== (config.localCaKey === undefined)) {
    problems.push('SKEIN_LOCAL_CA_CERT and SKEIN_LOCAL_CA_KEY: set both or neither');
  }
  if (config.secretTtlSeconds <= 0) problems.push('SECRET_TTL: must be positive');
  const noPqc = config.pqc ? pqcUnavailable() : undefined;
  if (noPqc !== undefined) problems.push(noPqc);
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/** ZTUNNEL_WORKER_THREADS and the CPU facts Istio's chart passes (config/worker-threads.ts). */
function engineThreads(p: Reader, concurrency: unknown): number {
  const r = workerThreads({
    setting: p.str('ZTUNNEL_WORKER_THREADS'),
    concurrency: typeof concurrency === 'number' && Number.isInteger(concurrency) && concurrency >= 0 ? concurrency : undefined,
    cpuLimit: p.int('ZTUNNEL_CPU_LIMIT', 1, 1_000_000),
    resourceLimit: p.int('ZTUNNEL_RESOURCE_CPU_LIMIT', 1, 1_000_000),
    resourceRequest: p.int('ZTUNNEL_RESOURCE_CPU_REQUEST', 0, 1_000_000),
    cores: availableParallelism(),
  });
  if (typeof r === 'number') return r;
  p.problem(`ZTUNNEL_WORKER_THREADS: ${r.problem}`);
  return 2;
}

function keepaliveConfig(p: Reader): KeepaliveConfig & { enabled: boolean } {
  return {
    enabled: p.bool('KEEPALIVE_ENABLED', true),
    timeSeconds: p.seconds('KEEPALIVE_TIME', 32_767) ?? DEFAULT_KEEPALIVE.timeSeconds,
    intervalSeconds: p.seconds('KEEPALIVE_INTERVAL', 32_767) ?? DEFAULT_KEEPALIVE.intervalSeconds,
    // The kernel's TCP_KEEPCNT limit is 127.
    retries: p.int('KEEPALIVE_RETRIES', 1, 127) ?? DEFAULT_KEEPALIVE.retries,
  };
}

/**
 * ISTIO_META_DNS_PROXY_ADDR is host:port; the proxy listens on the pod's
 * loopback whatever the host says (as ztunnel: "localhost:15053"), so only
 * the port is taken.
 */
function dnsProxyPort(addr: string | undefined, problems: string[]): number {
  if (addr === undefined) return 15053;
  const port = Number(/:(\d+)$/.exec(addr)?.[1]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    problems.push(`ISTIO_META_DNS_PROXY_ADDR: expected host:port, got '${addr}'`);
    return 15053;
  }
  return port;
}

interface ProxyConfigYaml { discoveryAddress?: string; proxyAdminPort?: number; statsPort?: number; concurrency?: number; proxyMetadata?: Record<string, string> }

/** Reads and validates single variables, collecting problems instead of throwing. */
class Reader {
  readonly #env: Env;
  readonly #problems: string[];

  constructor(env: Env, problems: string[]) {
    this.#env = env;
    this.#problems = problems;
  }

  /** A problem found outside the typed readers. */
  problem(message: string): void {
    this.#problems.push(message);
  }

  str(name: string): string | undefined {
    const v = this.#env[name];
    return v === undefined || v === '' ? undefined : v;
  }

  bool(name: string, dflt: boolean): boolean {
    const v = this.#env[name];
    if (v === undefined || v === '') return dflt;
    const l = v.toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(l)) return true;
    if (['false', '0', 'no', 'off'].includes(l)) return false;
    this.#problems.push(`${name}: '${v}' is not a boolean (true/false)`);
    return dflt;
  }

  int(name: string, min: number, max: number): number | undefined {
    const v = this.str(name);
    if (v === undefined) return undefined;
    const n = /^0x[0-9a-f]+$/i.test(v) ? Number.parseInt(v, 16) : /^\d+$/.test(v) ? Number(v) : Number.NaN;
    if (!Number.isInteger(n) || n < min || n > max) {
      this.#problems.push(`${name}: '${v}' is not an integer in ${min}..${max}`);
      return undefined;
    }
    return n;
  }

  duration(name: string): number | undefined {
    const v = this.str(name);
    if (v === undefined) return undefined;
    const ms = parseDurationMs(v);
    if (ms === undefined) this.#problems.push(`${name}: '${v}' is not a duration (e.g. 24h, 5m, 30s)`);
    return ms;
  }

  /** A duration the kernel takes in whole seconds: at least 1 s, at most `max`, rounded up. */
  seconds(name: string, max: number): number | undefined {
    const ms = this.duration(name);
    if (ms === undefined) return undefined;
    const secs = Math.ceil(ms / 1000);
    if (secs < 1 || secs > max) {
      this.#problems.push(`${name}: '${this.#env[name] ?? ''}' must be between 1s and ${max}s`);
      return undefined;
    }
    return secs;
  }

  oneOf<T extends string>(name: string, values: readonly T[], dflt: T): T {
    const v = this.str(name);
    if (v === undefined) return dflt;
    if ((values as readonly string[]).includes(v)) return v as T;
    this.#problems.push(`${name}: '${v}' must be one of ${values.join(', ')}`);
    return dflt;
  }

  ip(name: string): string | undefined {
    const v = this.str(name);
    if (v === undefined) return undefined;
    if (!/^[\d.]+$/.test(v) && !v.includes(':')) {
      this.#problems.push(`${name}: '${v}' is not an IP address`);
      return undefined;
    }
    return v;
  }

  /** A URI; "" explicitly disables; no scheme gets https://. */
  address(name: string, dflt: string): string | undefined {
    const v = this.#env[name];
    if (v === '') return undefined;
    const raw = v ?? dflt;
    const uri = /^[a-z]+:\/\//i.test(raw) ? raw : `https://${raw}`;
    try {
      const u = new URL(uri);
      if (u.hostname === '' || u.port === '' && !uri.startsWith('https://')) throw new Error('no host');
    } catch {
      this.#problems.push(`${name}: '${raw}' is not an address (host:port or https://host:port)`);
    }
    return uri;
  }

  /** A file path, SYSTEM, or inline PEM (a value that is not a path). */
  rootCa(name: string): RootCaSource {
    const v = this.str(name) ?? DEFAULT_ROOT;
    if (v === 'SYSTEM') return { kind: 'system' };
    if (v.includes('-----BEGIN')) return { kind: 'pem', pem: v };
    return { kind: 'file', path: v };
  }

  /** A file path, or the literal token when the value does not look like a path. */
  token(name: string): TokenSource {
    const v = this.str(name) ?? DEFAULT_TOKEN;
    return v.includes('/') ? { kind: 'file', path: v } : { kind: 'literal', token: v };
  }

  prefixed(prefix: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(this.#env)) {
      if (k.startsWith(prefix) && v !== undefined) out[k.slice(prefix.length).toLowerCase()] = v;
    }
    return out;
  }

  workloadInfo(name: string): WorkloadInfo | undefined {
    const v = this.str(name);
    if (v === undefined) return undefined;
    const [namespace, wname, serviceAccount, ...rest] = v.split('/');
    if (namespace === undefined || wname === undefined || serviceAccount === undefined || rest.length > 0 || !namespace || !wname || !serviceAccount) {
      this.#problems.push(`${name}: '${v}' must be namespace/name/serviceAccount`);
      return undefined;
    }
    return { namespace, name: wname, serviceAccount };
  }

  /** RUST_LOG's default level: its bare level (`info` in `info,access=off`), else info. */
  logLevel(name: string): LogLevel {
    const v = this.str(name) ?? 'info';
    const bare = v.split(',').map((d) => d.trim().toLowerCase()).filter((d) => d !== '' && !d.includes('='));
    // A bare word that is no level is a target (logTargets), as tracing reads it.
    return bare.find(isLogLevel) ?? 'info';
  }

  /**
   * RUST_LOG's `target=level` directives, by the log scope each names: a
   * tracing target is a module path (`ztunnel::proxy::inbound`) or one of
   * ztunnel's own (`access`), and a scope is the first part after the crate
   * (`proxy`, `access`). Targets Skein has no scope for (`hickory_server`)
   * change nothing, as they would name nothing here.
   */
  logTargets(name: string): Record<string, LogLevel> {
    const out: Record<string, LogLevel> = {};
    for (const raw of (this.str(name) ?? '').split(',')) {
      // The level follows the last '=' outside a span filter (`target[span{field=value}]=level`).
      const last = raw.lastIndexOf('=');
      const eq = last >= 0 && !/[\]}]/.test(raw.slice(last + 1)) ? last : -1;
      const bare = raw.trim();
      // A bare target means every level of it, as tracing reads `ztunnel::proxy`.
      if (eq < 0 && (bare === '' || isLogLevel(bare.toLowerCase()))) continue;
      const target = (eq < 0 ? bare : raw.slice(0, eq)).split('[')[0]?.trim() ?? '';
      const level = eq < 0 ? 'trace' : raw.slice(eq + 1).trim().toLowerCase();
      if (!isLogLevel(level)) {
        this.#problems.push(`${name}: '${raw.trim()}' has no level (trace, debug, info, warn, error, off)`);
        continue;
      }
      if (target !== '') out[logScope(target)] = level;
    }
    return out;
  }

  proxyConfig(): ProxyConfigYaml {
    const v = this.str('PROXY_CONFIG');
    if (v === undefined) return {};
    try {
      const parsed: unknown = parseYaml(v);
      if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed;
    } catch { /* reported below */ }
    this.#problems.push('PROXY_CONFIG: not a YAML mapping');
    return {};
  }
}

export const isLogLevel = (x: string): x is LogLevel => (LOG_LEVELS as readonly string[]).includes(x);

/** ztunnel's modules whose logs Skein writes under another scope. */
const SCOPE_OF_MODULE: Readonly<Record<string, string>> = { identity: 'ca', tls: 'crl' };

/**
 * The log scope a tracing target names: `ztunnel::proxy::inbound` is
 * `proxy`, `ztunnel::identity::caclient` is `ca`, `access` is `access`, and
 * `ztunnel` alone is the whole crate (log.ts: every scope but `access`).
 */
export function logScope(target: string): string {
  const parts = target.split('::');
  if (parts[0] !== 'ztunnel' || parts.length === 1) return parts[0] ?? target;
  const module = parts[1] ?? '';
  return SCOPE_OF_MODULE[module] ?? module;
}

/**
 * ztunnel's drain deadline from the pod's termination grace period: leave
 * 5 s for the rest of the shutdown when the grace is long, 1 s otherwise.
 */
/**
 * A duration a timer waits for, at most 2^31 - 1 ms (24.8 days): Node fires
 * a longer timer at once, so "1000d" meant as "never" would mean "now".
 */
function timerMs(ms: number): number {
  return Math.min(ms, 0x7fff_ffff);
}

export function drainFromGrace(graceSeconds: number | undefined): number {
  if (graceSeconds === undefined) return 5000;
  // At least a second, as ztunnel's construct_config.
  return Math.max(1, graceSeconds > 10 ? graceSeconds - 5 : graceSeconds - 1) * 1000;
}
