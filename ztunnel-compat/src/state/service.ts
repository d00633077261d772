// SPDX-License-Identifier: Apache-2.0
// The domain Service (ztunnel `state/service.rs`): a VIP/hostname with ports,
// load-balancing rules and its endpoints. `serviceFromXds` converts the WDS
// message (throws ServiceError); endpoints are filled in by the store from
// Workload.services, and kept whatever their health: whether one may be
// picked is decided at selection time by `endpointSelectable`.
import type { Service as XdsService, LoadBalancing as XdsLoadBalancing } from '../xds/proto.ts';
import { HealthPolicy as XdsHealthPolicy, IPFamilies, LoadBalancingMode, LoadBalancingScope, ServiceVisibility } from '../xds/proto.ts';
import {
  gatewayFromXds, gatewayToConfigDump, ipOrFail, networkAddressKey, type Fail, type GatewayAddress, type NetworkAddress,
} from './address.ts';
import { EMPTY, flat, str } from './intern.ts';
import type { HealthStatus, ServicePort } from './workload.ts';
import type { GatewayAddressDump } from './workload.ts';

export type { NetworkAddress } from './address.ts';

/** A CIDR VIP: NetworkAddress.length set and not the full 32/128. */
export interface NetworkCidr {
  readonly network: string;
  readonly ip: string;
  readonly prefixLen: number;
}

export type LoadBalancerScope = 'Region' | 'Zone' | 'Subzone' | 'Node' | 'Cluster' | 'Network';
export type LoadBalancerMode = 'Standard' | 'Strict' | 'Failover' | 'Passthrough';
export type LoadBalancerHealthPolicy = 'OnlyHealthy' | 'AllowAll';
export type IpFamily = 'Dual' | 'IPv4' | 'IPv6';
export type Visibility = 'Public' | 'Namespace';

export interface LoadBalancer {
  readonly routingPreferences: readonly LoadBalancerScope[];
  readonly mode: LoadBalancerMode;
  readonly healthPolicy: LoadBalancerHealthPolicy;
}

export interface WeightedWaypoint {
  readonly destination: GatewayAddress;
  readonly weight: number;
}

/** One workload behind a service. `port` maps service port → target port for this workload. */
export interface Endpoint {
  readonly workloadUid: string;
  readonly port: Readonly<Record<number, number>>;
  readonly status: HealthStatus;
}

export interface Service {
  readonly name: string;
  readonly namespace: string;
  readonly hostname: string;
  readonly vips: readonly NetworkAddress[];
  readonly cidrVips: readonly NetworkCidr[];
  /** servicePort → targetPort (0: use the endpoint's mapping). */
  readonly ports: ReadonlyMap<number, number>;
  readonly subjectAltNames: readonly string[];
  readonly waypoint: GatewayAddress | undefined;
  readonly weightedWaypoints: readonly WeightedWaypoint[];
  readonly loadBalancer: LoadBalancer | undefined;
  /** undefined: AUTOMATIC. */
  readonly ipFamilies: IpFamily | undefined;
  readonly canonical: boolean;
  readonly visibility: Visibility;
  /** By workload uid, healthy or not; written only by the store. */
  readonly endpoints: ReadonlyMap<string, Endpoint>;
}

const kServiceError = Symbol.for('skein.state.service-error');

/** A WDS Service that cannot be used; the whole resource is rejected (NACKed). */
export class ServiceError extends Error {
  override name = 'ServiceError';
  readonly code = 'SKEIN_BAD_SERVICE';
  readonly [kServiceError] = true;

  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && kServiceError in value;
  }
}

const fail: Fail = (reason) => {
  throw new ServiceError(reason);
};

/** Whether a client in `namespace` may address `s` (a NAMESPACE-visible service stays in its namespace). */
export function visibleTo(s: Service, namespace: string): boolean {
  return s.visibility === 'Public' || s.namespace === namespace;
}

/** The xDS name and store key of a service. */
export function serviceKey(namespace: string, hostname: string): string {
  return `${namespace}/${hostname}`;
}

// ---- enum conversions (unknown values are rejected, as prost's try_from does) ----

const SCOPES: Readonly<Record<number, LoadBalancerScope>> = {
  [LoadBalancingScope.REGION]: 'Region',
  [LoadBalancingScope.ZONE]: 'Zone',
  [LoadBalancingScope.SUBZONE]: 'Subzone',
  [LoadBalancingScope.NODE]: 'Node',
  [LoadBalancingScope.CLUSTER]: 'Cluster',
  [LoadBalancingScope.NETWORK]: 'Network',
};
const MODES: Readonly<Record<number, LoadBalancerMode>> = {
  [LoadBalancingMode.UNSPECIFIED_MODE]: 'Standard',
  [LoadBalancingMode.STRICT]: 'Strict',
  [LoadBalancingMode.FAILOVER]: 'Failover',
  [LoadBalancingMode.PASSTHROUGH]: 'Passthrough',
};
const HEALTH_POLICIES: Readonly<Record<number, LoadBalancerHealthPolicy>> = {
  [XdsHealthPolicy.ONLY_HEALTHY]: 'OnlyHealthy',
  [XdsHealthPolicy.ALLOW_ALL]: 'AllowAll',
};
const IP_FAMILIES: Readonly<Record<number, IpFamily | null>> = {
  [IPFamilies.AUTOMATIC]: null,
  [IPFamilies.IPV4_ONLY]: 'IPv4',
  [IPFamilies.IPV6_ONLY]: 'IPv6',
  [IPFamilies.DUAL]: 'Dual',
};
const VISIBILITIES: Readonly<Record<number, Visibility>> = {
  [ServiceVisibility.PUBLIC]: 'Public',
  [ServiceVisibility.NAMESPACE]: 'Namespace',
};

function loadBalancerOf(lb: XdsLoadBalancing): LoadBalancer {
  const routingPreferences = lb.routingPreference.map((s) => {
    // ztunnel: UNSPECIFIED_SCOPE is "invalid target" (WorkloadError::EnumParse).
    if (s === LoadBalancingScope.UNSPECIFIED_SCOPE) return fail('unknown enum: invalid target');
    return SCOPES[s] ?? fail(`unknown enum: routing_preference ${String(s)}`);
  });
  const mode = MODES[lb.mode ?? 0] ?? fail(`unknown enum: load_balancing.mode ${String(lb.mode)}`);
  const healthPolicy = HEALTH_POLICIES[lb.healthPolicy ?? 0] ?? fail(`unknown enum: health_policy ${String(lb.healthPolicy)}`);
  return Object.freeze({ routingPreferences: Object.freeze(routingPreferences), mode, healthPolicy });
}

// ---- conversion --------------------------------------------------------------

/**
 * ztunnel `TryFrom<&XdsService> for Service`, plus required namespace and
 * hostname (together the xDS name and store key). Throws ServiceError.
 */
export function serviceFromXds(x: XdsService): Service {
  const namespace = str(x.namespace);
  const hostname = flat(x.hostname ?? '');
  if (namespace === '') fail('service has no namespace');
  if (hostname === '') fail('service has no hostname');
  const vips: NetworkAddress[] = [];
  const cidrVips: NetworkCidr[] = [];
  for (const a of x.addresses) {
    const ip = ipOrFail(a.address, fail);
    const network = str(a.network);
    const max = ip.includes(':') ? 128 : 32;
    // ztunnel: `length` set and != 32/128 makes a CIDR VIP; IpNet::new rejects a too-long prefix.
    if (a.length !== undefined && a.length !== max) {
      if (a.length > max) fail(`invalid cidr: prefix length ${String(a.length)} for ${ip}`);
      cidrVips.push(Object.freeze({ network, ip, prefixLen: a.length }));
    } else {
      vips.push(Object.freeze({ network, ip }));
    }
  }
  const ports = new Map<number, number>();
  // ztunnel HashMap<u16, u16>: a repeated service port keeps the last target.
  for (const p of x.ports) ports.set((p.servicePort ?? 0) & 0xffff, (p.targetPort ?? 0) & 0xffff);
  const weightedWaypoints = x.weightedWaypoints.map((ww): WeightedWaypoint => {
    if (ww.destination === undefined) return fail('weighted waypoint has no destination');
    return Object.freeze({ destination: gatewayFromXds(ww.destination, fail), weight: ww.weight ?? 0 });
  });
  const ipFamilies = IP_FAMILIES[x.ipFamilies ?? 0];
  if (ipFamilies === undefined) fail(`unknown enum: ip_families ${String(x.ipFamilies)}`);
  const visibility = VISIBILITIES[x.visibility ?? 0] ?? fail(`unknown enum: visibility ${String(x.visibility)}`);
  const s: Service = {
    name: flat(x.name ?? ''),
    namespace,
    hostname,
    vips: vips.length === 0 ? EMPTY : Object.freeze(vips),
    cidrVips: cidrVips.length === 0 ? EMPTY : Object.freeze(cidrVips),
    ports,
    subjectAltNames: x.subjectAltNames.length === 0 ? EMPTY : Object.freeze(x.subjectAltNames.map(str)),
    waypoint: x.waypoint === undefined ? undefined : gatewayFromXds(x.waypoint, fail),
    weightedWaypoints: weightedWaypoints.length === 0 ? EMPTY : Object.freeze(weightedWaypoints),
    loadBalancer: x.loadBalancing === undefined ? undefined : loadBalancerOf(x.loadBalancing),
    ipFamilies: ipFamilies ?? undefined,
    canonical: x.canonical ?? false,
    visibility,
    endpoints: new Map<string, Endpoint>(),
  };
  return Object.freeze(s);
}

// ---- endpoints ----------------------------------------------------------------

/**
 * ztunnel `Service::should_include_endpoint`: healthy endpoints always, the
 * others only under health_policy ALLOW_ALL. ztunnel applies it when storing;
 * Skein stores every endpoint and asks here, so a health-policy change takes
 * effect without the workloads being pushed again.
 */
export function endpointSelectable(s: Service, ep: Endpoint): boolean {
  return ep.status === 'Healthy' || s.loadBalancer?.healthPolicy === 'AllowAll';
}

/** The endpoints load balancing may pick from. */
export function* selectableEndpoints(s: Service): IterableIterator<Endpoint> {
  for (const ep of s.endpoints.values()) if (endpointSelectable(s, ep)) yield ep;
}

// Port lists are shared between pods of a Deployment (see workload.ts), so
// keying on the list object shares the derived port map as well.
const portMaps = new WeakMap<readonly ServicePort[], Readonly<Record<number, number>>>();

export function endpointFor(workloadUid: string, ports: readonly ServicePort[], status: HealthStatus): Endpoint {
  let port = portMaps.get(ports);
  if (port === undefined) {
    const m: Record<number, number> = {};
    for (const p of ports) m[p.servicePort] = p.targetPort;
    port = Object.freeze(m);
    portMaps.set(ports, port);
  }
  return Object.freeze({ workloadUid, port, status });
}

/** The store's write access to a service's endpoints (the only cast of the read-only view). */
export function endpointsOf(s: Service): Map<string, Endpoint> {
  return s.endpoints as Map<string, Endpoint>;
}

// ---- config_dump -----------------------------------------------------------------

export interface EndpointDump { workloadUid: string; port: Record<string, number>; status: HealthStatus }

export interface ServiceDump {
  name: string;
  namespace: string;
  hostname: string;
  vips: string[];
  cidrVips?: string[];
  ports: Record<string, number>;
  endpoints: Record<string, EndpointDump>;
  subjectAltNames: string[];
  waypoint?: GatewayAddressDump;
  weightedWaypoints?: { destination: GatewayAddressDump; weight: number }[];
  loadBalancer?: { routingPreferences: LoadBalancerScope[]; mode: LoadBalancerMode; healthPolicy: LoadBalancerHealthPolicy };
  ipFamilies?: IpFamily;
  canonical: boolean;
  visibility: Visibility;
}

export function endpointToConfigDump(ep: Endpoint): EndpointDump {
  return { workloadUid: ep.workloadUid, port: { ...ep.port }, status: ep.status };
}

/**
 * ztunnel's config_dump JSON for a service: the serde form of `struct Service`
 * in ztunnel `src/state/service.rs` (camelCase; `cidrVips` skipped when empty;
 * `waypoint`, `loadBalancer`, `ipFamilies` skipped when None; `canonical`
 * always present). `vips` are NetworkAddress Display strings "network/ip"
 * (`src/state/workload.rs`), CIDR VIPs "network/ip/len"; `ports` and endpoint
 * `port` are u16 → u16 maps (JSON object keys are strings); enum values are
 * the Rust variant names (`Region`, `Failover`, `OnlyHealthy`, `IPv4`, …).
 * `endpoints` lists only what ztunnel would have stored: endpoints that pass
 * `endpointSelectable`, ordered by uid.
 * istioctl (`istioctl/pkg/writer/ztunnel/configdump/api.go`, `ZtunnelService`)
 * reads these names. `weightedWaypoints` and `visibility` are newer than any
 * ztunnel source available here: they follow the same conventions (an empty
 * list is skipped; the enum is always printed, as `canonical` is).
 */
export function serviceToConfigDump(s: Service): ServiceDump {
  const endpoints: Record<string, EndpointDump> = {};
  for (const uid of [...s.endpoints.keys()].sort()) {
    const ep = s.endpoints.get(uid);
    if (ep !== undefined && endpointSelectable(s, ep)) endpoints[uid] = endpointToConfigDump(ep);
  }
  const lb = s.loadBalancer;
  return {
    name: s.name,
    namespace: s.namespace,
    hostname: s.hostname,
    vips: s.vips.map((v) => networkAddressKey(v.network, v.ip)),
    ...(s.cidrVips.length === 0 ? {} : { cidrVips: s.cidrVips.map((c) => `${networkAddressKey(c.network, c.ip)}/${String(c.prefixLen)}`) }),
    ports: Object.fromEntries(s.ports),
    endpoints,
    subjectAltNames: [...s.subjectAltNames],
    ...(s.waypoint === undefined ? {} : { waypoint: gatewayToConfigDump(s.waypoint) }),
    ...(s.weightedWaypoints.length === 0 ? {} : {
      weightedWaypoints: s.weightedWaypoints.map((w) => ({ destination: gatewayToConfigDump(w.destination), weight: w.weight })),
    }),
    ...(lb === undefined ? {} : {
      loadBalancer: { routingPreferences: [...lb.routingPreferences], mode: lb.mode, healthPolicy: lb.healthPolicy },
    }),
    ...(s.ipFamilies === undefined ? {} : { ipFamilies: s.ipFamilies }),
    canonical: s.canonical,
    visibility: s.visibility,
  };
}
