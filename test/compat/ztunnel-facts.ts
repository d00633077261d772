// SPDX-License-Identifier: Apache-2.0
// ztunnel-only facts: names and values that live in ztunnel's Rust source
// (in no registry, so setup cannot fetch them). Each is written once, here,
// with the file it comes from (github.com/istio/ztunnel, master); tests import
// them instead of repeating literals. Where Istio's own files name the same
// thing (istio-files.ts), tests read those as well.

/**
 * In-pod workload manager metrics. src/app.rs init_inpod_proxy_mgr registers
 * them under `registry.sub_registry_with_prefix("workload_manager")` of the
 * ROOT registry (not the `istio` one of src/metrics.rs sub_registry), and
 * src/inpod/metrics.rs Metrics::new names them active_proxy_count,
 * pending_proxy_count (gauges), proxies_started, proxies_stopped (counters,
 * which prometheus-client exports with `_total`).
 */
export const WORKLOAD_MANAGER_METRICS = {
  active: 'workload_manager_active_proxy_count',
  pending: 'workload_manager_pending_proxy_count',
  started: 'workload_manager_proxies_started_total',
  stopped: 'workload_manager_proxies_stopped_total',
} as const;

/**
 * src/proxy/metrics.rs: CommonTrafficLabels ends with
 * `#[prometheus(flatten)] locality: OptionallyEncode<LocalityLabels>`, whose
 * fields are these four (set from Workload.locality in with_source /
 * with_destination, `unknown` when empty: DefaultedUnknown).
 */
export const LOCALITY_LABELS = ['source_region', 'source_zone', 'destination_region', 'destination_zone'] as const;

/**
 * src/proxy/metrics.rs (ztunnel PR #1695 "enhance ztunnel metrics"):
 * `tcp_connections_failed` counter with CommonTrafficLabels, and the open
 * sockets gauge `tcp_sockets_open` labelled by `reporter` only, both in the
 * `istio` sub-registry.
 */
export const SOCKETS_OPEN = { name: 'istio_tcp_sockets_open', labels: ['reporter'] } as const;

/** src/metrics.rs DefaultedUnknown: a missing label value is encoded as this. */
export const UNKNOWN = 'unknown';

/**
 * src/baggage.rs baggage_header_val: the keys in this order, each part left
 * out when its value is missing; k8s.<workload_type>.name with the type
 * lowercased (deployment, cronjob, pod, job).
 */
export const BAGGAGE_KEYS = ['k8s.cluster.name', 'k8s.namespace.name', 'k8s.<type>.name', 'service.name', 'service.version', 'cloud.region', 'cloud.availability_zone'] as const;

/**
 * src/proxy.rs Error::AuthorizationPolicyRejection:
 * `#[error("connection closed due to policy rejection: {0}")]`, the error of
 * the inbound access log line when RBAC denies.
 */
export const POLICY_REJECTION_PREFIX = 'connection closed due to policy rejection: ';

/**
 * src/version.rs BuildInfo (serde camelCase in the admin config_dump, src/admin.rs
 * ConfigDump.version): version, git_revision, rust_version, build_status, git_tag.
 */
export const BUILD_INFO_FIELDS = ['version', 'gitRevision', 'rustVersion', 'buildStatus', 'gitTag'] as const;

/**
 * src/config.rs `pub struct Config` (#[serde(rename_all = "camelCase")]),
 * as config_dump's `config`: the fields Skein has a meaning for. (ztunnel's
 * dnsResolverCfg/Opts, proxyArgs and fakeSelfInbound are hickory/test
 * internals with no Skein equivalent.)
 */
export const CONFIG_FIELDS = [
  'proxy', 'dnsProxy', 'transparentNetworkPolicies', 'windowSize', 'connectionWindowSize', 'frameSize', 'poolMaxStreamsPerConn', 'poolUnusedReleaseTimeout',
  'adminAddr', 'statsAddr', 'readinessAddr', 'inboundAddr', 'inboundPlaintextAddr', 'outboundAddr', 'dnsProxyAddr', 'illegalPorts',
  'network', 'localNode', 'proxyMode', 'proxyWorkloadInformation', 'clusterId', 'clusterDomain', 'caAddress', 'caRootCert', 'altCaHostname',
  'xdsAddress', 'xdsRootCert', 'altXdsHostname', 'preferedServiceNamespace', 'secretTtl', 'xdsOnDemand', 'fakeCa', 'selfTerminationDeadline',
  'proxyMetadata', 'numWorkerThreads', 'requireOriginalSource', 'inpodUds', 'inpodPortReuse', 'packetMark', 'socketConfig', 'xdsHeaders',
  'caHeaders', 'localhostAppTunnel', 'ztunnelIdentity', 'ztunnelWorkload', 'ipv6Enabled',
] as const;

/**
 * src/admin.rs ConfigDump: `static_config: LocalConfig`, Default (all three
 * lists empty) unless LOCAL_XDS(_PATH) is set, in which case it is that file
 * parsed (src/xds.rs LocalConfig: workloads, policies, services).
 */
export const EMPTY_STATIC_CONFIG = { workloads: [], policies: [], services: [] } as const;

/**
 * istio/istio tests/integration/ambient/crl/crl_test.go (checkCRLRejectionMetric,
 * parseCRLRejectionTotal): ztunnel counts CRL refusals in
 * `istio_crl_policy_rejections_total`, `reporter="source"` where the client
 * refused the server's chain (outbound), `reporter="destination"` where the
 * server refused the client's (inbound).
 */
export const CRL_REJECTIONS = { name: 'istio_crl_policy_rejections_total', reporter: { outbound: 'source', inbound: 'destination' } } as const;
