// SPDX-License-Identifier: Apache-2.0
// The domain Workload (ztunnel `state/workload.rs`): what WDS says about one
// pod/WorkloadEntry, with ztunnel's defaults applied, converted once from the
// decoded xDS message by a fallible `workloadFromXds`. Objects are frozen and
// share every repeated part (strings, localities, waypoints, service port
// lists) so 200k of them stay small.
import type { Workload as XdsWorkload, PortList as XdsPortList } from '../xds/proto.ts';
import { ApplicationTunnelProtocol, NetworkMode as XdsNetworkMode, TunnelProtocol, WorkloadStatus, WorkloadType } from '../xds/proto.ts';
import type { Identity } from '../identity/spiffe.ts';
import { gatewayFromXds, gatewayToConfigDump, ipOrFail, type Fail, type GatewayAddress } from './address.ts';
import { EMPTY, flat, Interner, str } from './intern.ts';

export type { GatewayAddress } from './address.ts';

export type Protocol = 'HBONE' | 'TCP';
export type HealthStatus = 'Healthy' | 'Unhealthy';
export type NetworkMode = 'Standard' | 'HostNetwork';
/** ztunnel lower-cases the WorkloadType enum name. */
export type WorkloadKind = 'deployment' | 'cronjob' | 'pod' | 'job';
export type AppProtocolName = 'UNKNOWN' | 'HTTP11' | 'HTTP2' | 'GRPC' | 'TCP' | 'TLS';

export interface ServicePort {
  readonly servicePort: number;
  readonly targetPort: number;
  readonly appProtocol: AppProtocolName;
}

/** Keyed by "namespace/hostname" of the service this workload backs. */
export type WorkloadServices = Readonly<Record<string, readonly ServicePort[]>>;

export interface ApplicationTunnel {
  readonly protocol: 'NONE' | 'PROXY';
  /** undefined: no override (0 on the wire). */
  readonly port: number | undefined;
}

export interface Locality {
  readonly region: string;
  readonly zone: string;
  readonly subzone: string;
}

export interface Workload {
  readonly uid: string;
  readonly workloadIps: readonly string[];
  readonly waypoint: GatewayAddress | undefined;
  readonly networkGateway: GatewayAddress | undefined;
  readonly protocol: Protocol;
  readonly networkMode: NetworkMode;
  readonly name: string;
  readonly namespace: string;
  readonly trustDomain: string;
  readonly serviceAccount: string;
  readonly network: string;
  readonly workloadName: string;
  readonly workloadType: WorkloadKind;
  readonly canonicalName: string;
  readonly canonicalRevision: string;
  readonly hostname: string;
  readonly node: string;
  readonly nativeTunnel: boolean;
  readonly applicationTunnel: ApplicationTunnel | undefined;
  /** Selector policy keys "ns/name". */
  readonly authorizationPolicies: readonly string[];
  readonly status: HealthStatus;
  readonly clusterId: string;
  readonly locality: Locality;
  readonly services: WorkloadServices;
  readonly capacity: number;
}

const kWorkloadError = Symbol.for('skein.state.workload-error');

/** A WDS Workload that cannot be used; the whole resource is rejected (NACKed). */
export class WorkloadError extends Error {
  override name = 'WorkloadError';
  readonly code = 'SKEIN_BAD_WORKLOAD';
  readonly [kWorkloadError] = true;

  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && kWorkloadError in value;
  }
}

const fail: Fail = (reason) => {
  throw new WorkloadError(reason);
};

// ---- enum conversions (ztunnel rejects values its proto does not know) ------

function protocolOf(v: number | undefined): Protocol {
  switch (v ?? TunnelProtocol.NONE) {
    case TunnelProtocol.NONE: return 'TCP';
    case TunnelProtocol.HBONE: return 'HBONE';
    // ztunnel's copy of workload.proto has no LEGACY_ISTIO_MTLS, so prost
    // fails the enum conversion and the workload is NACKed.
    case TunnelProtocol.LEGACY_ISTIO_MTLS: return fail('unsupported tunnel protocol LEGACY_ISTIO_MTLS');
    default: return fail(`unknown enum: tunnel_protocol ${String(v)}`);
  }
}

function statusOf(v: number | undefined): HealthStatus {
  switch (v ?? WorkloadStatus.HEALTHY) {
    case WorkloadStatus.HEALTHY: return 'Healthy';
    case WorkloadStatus.UNHEALTHY: return 'Unhealthy';
    default: return fail(`unknown enum: status ${String(v)}`);
  }
}

function networkModeOf(v: number | undefined): NetworkMode {
  switch (v ?? XdsNetworkMode.STANDARD) {
    case XdsNetworkMode.STANDARD: return 'Standard';
    case XdsNetworkMode.HOST_NETWORK: return 'HostNetwork';
    default: return fail(`unknown enum: network_mode ${String(v)}`);
  }
}

/** prost's `workload_type()` getter maps unknown values to the default, so no rejection here. */
function workloadKindOf(v: number | undefined): WorkloadKind {
  switch (v) {
    case WorkloadType.CRONJOB: return 'cronjob';
    case WorkloadType.POD: return 'pod';
    case WorkloadType.JOB: return 'job';
    default: return 'deployment';
  }
}

const APP_PROTOCOLS: readonly AppProtocolName[] = ['UNKNOWN', 'HTTP11', 'HTTP2', 'GRPC', 'TCP', 'TLS'];

// ---- shared sub-objects --------------------------------------------------------

const EMPTY_LOCALITY: Locality = Object.freeze({ region: '', zone: '', subzone: '' });
const localities = new Interner<Locality>(100_000);
const tunnels = new Interner<ApplicationTunnel>(10_000);
// Pods of one Deployment carry identical service maps; one frozen copy serves all.
const serviceMaps = new Interner<WorkloadServices>(200_000);
const EMPTY_SERVICES: WorkloadServices = Object.freeze({});

function localityOf(x: XdsWorkload['locality']): Locality {
  if (x === undefined) return EMPTY_LOCALITY;
  const region = str(x.region);
  const zone = str(x.zone);
  const subzone = str(x.subzone);
  if (region === '' && zone === '' && subzone === '') return EMPTY_LOCALITY;
  return localities.get(`${region}\0${zone}\0${subzone}`, () => Object.freeze({ region, zone, subzone }));
}

function applicationTunnelOf(x: XdsWorkload['applicationTunnel']): ApplicationTunnel | undefined {
  if (x === undefined) return undefined;
  let protocol: ApplicationTunnel['protocol'];
  switch (x.protocol ?? ApplicationTunnelProtocol.NONE) {
    case ApplicationTunnelProtocol.NONE: protocol = 'NONE'; break;
    case ApplicationTunnelProtocol.PROXY: protocol = 'PROXY'; break;
    default: return fail(`unknown enum: application_tunnel.protocol ${String(x.protocol)}`);
  }
  // ztunnel: port 0 → None, else `as u16`.
  const raw = (x.port ?? 0) & 0xffff;
  const port = raw === 0 ? undefined : raw;
  return tunnels.get(`${protocol}\0${String(port)}`, () => Object.freeze({ protocol, port }));
}

function servicesOf(x: Readonly<Record<string, XdsPortList>>): WorkloadServices {
  const keys = Object.keys(x);
  if (keys.length === 0) return EMPTY_SERVICES;
  keys.sort();
  let id = '';
  for (const k of keys) {
    // ztunnel WorkloadError::NamespacedHostnameParse.
    if (!k.includes('/')) fail(`failed to parse namespaced hostname: ${k}`);
    id += `${k}\0`;
    for (const p of x[k]?.ports ?? EMPTY) {
      id += `${String(p.servicePort ?? 0)}:${String(p.targetPort ?? 0)}:${String(p.appProtocol ?? 0)},`;
    }
    id += '\0';
  }
  return serviceMaps.get(id, () => {
    const out: Record<string, readonly ServicePort[]> = {};
    for (const k of keys) {
      const ports = (x[k]?.ports ?? EMPTY).map((p): ServicePort => Object.freeze({
        // ztunnel keeps ports as u16 (`as u16`).
        servicePort: (p.servicePort ?? 0) & 0xffff,
        targetPort: (p.targetPort ?? 0) & 0xffff,
        appProtocol: APP_PROTOCOLS[p.appProtocol ?? 0] ?? 'UNKNOWN',
      }));
      out[str(k)] = ports.length === 0 ? EMPTY : Object.freeze(ports);
    }
    return Object.freeze(out);
  });
}

function stringsOf(list: readonly string[]): readonly string[] {
  return list.length === 0 ? EMPTY : Object.freeze(list.map(str));
}

// ---- conversion ------------------------------------------------------------------

/** What an empty trust domain or service account stands for. */
export interface WorkloadDefaults { trustDomain: string; serviceAccount: string }

/** xDS (ztunnel's TryFrom<XdsWorkload>): an empty trust domain is cluster.local, an empty account default. */
export const XDS_WORKLOAD_DEFAULTS: WorkloadDefaults = Object.freeze({ trustDomain: 'cluster.local', serviceAccount: 'default' });

/**
 * Static config (ztunnel's LocalWorkload, serde `#[serde(default)]` on the
 * Workload's strings): a missing trust domain stays empty. (ztunnel leaves a
 * missing service account empty too; Skein keeps `default`, since an
 * identity with an empty account can get no certificate.)
 */
export const STATIC_WORKLOAD_DEFAULTS: WorkloadDefaults = Object.freeze({ trustDomain: '', serviceAccount: 'default' });

/**
 * ztunnel `TryFrom<XdsWorkload> for Workload`, plus a required uid (the xDS
 * name and every index key). Throws WorkloadError; nothing is half-converted.
 */
export function workloadFromXds(x: XdsWorkload, defaults: WorkloadDefaults = XDS_WORKLOAD_DEFAULTS): Workload {
  const uid = flat(x.uid ?? '');
  if (uid === '') fail('workload has no uid');
  const workloadIps = x.addresses.length === 0 ? EMPTY : Object.freeze(x.addresses.map((a) => ipOrFail(a, fail)));
  const w: Workload = {
    uid,
    workloadIps,
    waypoint: x.waypoint === undefined ? undefined : gatewayFromXds(x.waypoint, fail),
    networkGateway: x.networkGateway === undefined ? undefined : gatewayFromXds(x.networkGateway, fail),
    protocol: protocolOf(x.tunnelProtocol),
    networkMode: networkModeOf(x.networkMode),
    name: flat(x.name ?? ''),
    namespace: str(x.namespace),
    trustDomain: str(x.trustDomain) || defaults.trustDomain,
    serviceAccount: str(x.serviceAccount) || defaults.serviceAccount,
    network: str(x.network),
    workloadName: str(x.workloadName),
    workloadType: workloadKindOf(x.workloadType),
    canonicalName: str(x.canonicalName),
    canonicalRevision: str(x.canonicalRevision),
    hostname: flat(x.hostname ?? ''),
    node: str(x.node),
    nativeTunnel: x.nativeTunnel ?? false,
    applicationTunnel: applicationTunnelOf(x.applicationTunnel),
    authorizationPolicies: stringsOf(x.authorizationPolicies),
    status: statusOf(x.status),
    clusterId: str(x.clusterId) || 'Kubernetes',
    locality: localityOf(x.locality),
    services: servicesOf(x.services),
    // google.protobuf.UInt32Value: absent → 1; present with no value → 0.
    capacity: x.capacity === undefined ? 1 : (x.capacity.value ?? 0),
  };
  return Object.freeze(w);
}

/** The SPIFFE identity a workload's certificate carries. */
export function identityOf(w: Workload): Identity {
  return { trustDomain: w.trustDomain, namespace: w.namespace, serviceAccount: w.serviceAccount };
}

/** Whether the proxy may find this workload by IP (ztunnel skips HOST_NETWORK: its IP is the node's). */
export function indexedByIp(w: Workload): boolean {
  return w.networkMode !== 'HostNetwork';
}

// ---- config_dump -------------------------------------------------------------------

export interface GatewayAddressDump { destination: string; hboneMtlsPort: number }

/** Keys in ztunnel's serde field order; optional keys are the ones serde skips when default. */
export interface WorkloadDump {
  workloadIps: string[];
  waypoint?: GatewayAddressDump;
  networkGateway?: GatewayAddressDump;
  protocol: Protocol;
  networkMode: NetworkMode;
  uid: string;
  name: string;
  namespace: string;
  trustDomain?: string;
  serviceAccount?: string;
  network?: string;
  workloadName?: string;
  workloadType: WorkloadKind;
  canonicalName?: string;
  canonicalRevision?: string;
  hostname?: string;
  node?: string;
  nativeTunnel?: true;
  applicationTunnel?: { protocol: ApplicationTunnel['protocol']; port: number | null };
  authorizationPolicies?: string[];
  status: HealthStatus;
  clusterId: string;
  locality?: { region: string; zone: string; subzone: string };
  services?: string[];
  capacity: number;
}

/**
 * ztunnel's config_dump JSON for a workload: the serde form of `struct Workload`
 * in ztunnel `src/state/workload.rs` (`rename_all = "camelCase"`; fields marked
 * `skip_serializing_if = "is_default"` are left out when empty/false/default).
 * - `services` is `Vec<NamespacedHostname>`, each printed "namespace/hostname";
 *   the port lists live in the services' endpoints, not here.
 * - `applicationTunnel.port` is an `Option<u16>` without a skip: `null` when unset.
 * - `locality` is skipped only when region, zone and subzone are all empty.
 * istioctl (`istioctl/pkg/writer/ztunnel/configdump/api.go`, `ZtunnelWorkload`)
 * reads these names.
 */
export function workloadToConfigDump(w: Workload): WorkloadDump {
  const { locality: l, applicationTunnel: tunnel } = w;
  const services = Object.keys(w.services);
  return {
    workloadIps: [...w.workloadIps],
    ...(w.waypoint === undefined ? {} : { waypoint: gatewayToConfigDump(w.waypoint) }),
    ...(w.networkGateway === undefined ? {} : { networkGateway: gatewayToConfigDump(w.networkGateway) }),
    protocol: w.protocol,
    networkMode: w.networkMode,
    uid: w.uid,
    name: w.name,
    namespace: w.namespace,
    ...(w.trustDomain === '' ? {} : { trustDomain: w.trustDomain }),
    ...(w.serviceAccount === '' ? {} : { serviceAccount: w.serviceAccount }),
    ...(w.network === '' ? {} : { network: w.network }),
    ...(w.workloadName === '' ? {} : { workloadName: w.workloadName }),
    workloadType: w.workloadType,
    ...(w.canonicalName === '' ? {} : { canonicalName: w.canonicalName }),
    ...(w.canonicalRevision === '' ? {} : { canonicalRevision: w.canonicalRevision }),
    ...(w.hostname === '' ? {} : { hostname: w.hostname }),
    ...(w.node === '' ? {} : { node: w.node }),
    ...(w.nativeTunnel ? { nativeTunnel: true as const } : {}),
    ...(tunnel === undefined ? {} : { applicationTunnel: { protocol: tunnel.protocol, port: tunnel.port ?? null } }),
    ...(w.authorizationPolicies.length === 0 ? {} : { authorizationPolicies: [...w.authorizationPolicies] }),
    status: w.status,
    clusterId: w.clusterId,
    ...(l.region === '' && l.zone === '' && l.subzone === '' ? {} : { locality: { region: l.region, zone: l.zone, subzone: l.subzone } }),
    ...(services.length === 0 ? {} : { services }),
    capacity: w.capacity,
  };
}
