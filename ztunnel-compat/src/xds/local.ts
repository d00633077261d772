// SPDX-License-Identifier: Apache-2.0
// Static configuration (LOCAL_XDS_PATH / LOCAL_XDS) in ztunnel's YAML format
// (reference §9.2). The YAML is turned into the same xDS messages istiod
// would send and handed to the same handlers, so one validation path serves
// both; a static file is loaded once at start.
import fs from 'node:fs';
import net from 'node:net';
import { parse as parseYaml } from 'yaml';
import { ipToBytes } from '../state/ip.ts';
import {
  ADDRESS_TYPE_URL,
  AUTHORIZATION_TYPE_URL,
  packResource,
  type Address,
  type Authorization,
  type GatewayAddress,
  type Match,
  type MessageInit,
  type NetworkAddress,
  type StringMatch,
} from './proto.ts';
import type { Rejected, XdsHandler, XdsResource } from './client.ts';

export class LocalConfigError extends Error {
  override name = 'LocalConfigError';
  readonly code = 'SKEIN_LOCAL_CONFIG';
}

type Obj = Record<string, unknown>;

const WORKLOAD_KEYS = ['uid', 'name', 'namespace', 'serviceAccount', 'trustDomain', 'workloadIps', 'protocol', 'node', 'network', 'networkMode', 'waypoint', 'networkGateway', 'hostname', 'nativeTunnel', 'applicationTunnel', 'authorizationPolicies', 'status', 'clusterId', 'locality', 'capacity', 'workloadName', 'workloadType', 'canonicalName', 'canonicalRevision', 'services'];
const SERVICE_KEYS = ['name', 'namespace', 'hostname', 'vips', 'ports', 'subjectAltNames', 'waypoint', 'weightedWaypoints', 'loadBalancer', 'ipFamilies', 'canonical', 'visibility'];
const POLICY_KEYS = ['name', 'namespace', 'scope', 'action', 'dryRun', 'rules'];
const MATCH_KEYS = ['namespaces', 'notNamespaces', 'principals', 'notPrincipals', 'serviceAccounts', 'notServiceAccounts', 'sourceIps', 'notSourceIps', 'destinationIps', 'notDestinationIps', 'destinationPorts', 'notDestinationPorts'];

export interface LocalConfig {
  addresses: { name: string; message: MessageInit<Address> }[];
  policies: { name: string; message: MessageInit<Authorization> }[];
  /** The document as read, for config_dump's staticConfig. */
  document: unknown;
}

export function readLocalConfig(source: { path: string } | { inline: string }): LocalConfig {
  let text: string;
  if ('path' in source) {
    try {
      text = fs.readFileSync(source.path, 'utf8');
    } catch (err) {
      throw new LocalConfigError(`cannot read LOCAL_XDS_PATH ${source.path}: ${(err as Error).message}`);
    }
  } else {
    text = source.inline;
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new LocalConfigError(`static config is not valid YAML: ${(err as Error).message}`);
  }
  return parseLocalConfig(doc ?? {});
}

export function parseLocalConfig(doc: unknown): LocalConfig {
  const top = obj(doc, 'static config');
  onlyKeys(top, ['workloads', 'services', 'policies'], 'static config');
  const out: LocalConfig = { addresses: [], policies: [], document: doc };
  list(top.workloads, 'workloads').forEach((w, i) => {
    const m = workload(obj(w, `workloads[${i}]`), `workloads[${i}]`);
    out.addresses.push({ name: m.uid ?? '', message: { workload: m } });
  });
  list(top.services, 'services').forEach((s, i) => {
    const m = service(obj(s, `services[${i}]`), `services[${i}]`);
    out.addresses.push({ name: `${m.namespace ?? ''}/${m.hostname ?? ''}`, message: { service: m } });
  });
  list(top.policies, 'policies').forEach((p, i) => {
    const m = policy(obj(p, `policies[${i}]`), `policies[${i}]`);
    out.policies.push({ name: `${m.namespace ?? ''}/${m.name ?? ''}`, message: m });
  });
  return out;
}

/**
 * Applies a static config through the xDS handlers. Anything a handler
 * rejects is an error: a static file has nobody to NACK to.
 */
export function applyLocalConfig(cfg: LocalConfig, handlers: { address: XdsHandler; authorization: XdsHandler }): void {
  const rejected: Rejected[] = [];
  const addr: XdsResource[] = cfg.addresses.map((a) => ({ name: a.name, version: 'local', resource: packResource(ADDRESS_TYPE_URL, a.message) }));
  const pol: XdsResource[] = cfg.policies.map((p) => ({ name: p.name, version: 'local', resource: packResource(AUTHORIZATION_TYPE_URL, p.message) }));
  rejected.push(...handlers.address.handle(addr, []), ...handlers.authorization.handle(pol, []));
  if (rejected.length > 0) throw new LocalConfigError(`static config rejected: ${rejected.map((r) => `${r.name}: ${r.reason}`).join('; ')}`);
}

// ---- conversions ------------------------------------------------------------

function workload(w: Obj, where: string): MessageInit<NonNullable<Address['workload']>> {
  onlyKeys(w, WORKLOAD_KEYS, where);
  const namespace = reqStr(w.namespace, `${where}.namespace`);
  const name = optStr(w.name, `${where}.name`) ?? '';
  const ips = list(w.workloadIps, `${where}.workloadIps`);
  // A workload known only by hostname (a ServiceEntry with DNS resolution) has no IPs.
  if (ips.length === 0 && (optStr(w.hostname, `${where}.hostname`) ?? '') === '') {
    throw new LocalConfigError(`${where}.workloadIps: required (or a hostname)`);
  }
  // Required, as in ztunnel (src/xds.rs LocalWorkload: `services` has no serde default); `{}` for none.
  if (w.services === undefined) throw new LocalConfigError(`${where}.services: required (write services: {} for a workload in no service)`);
  const services: Record<string, { ports: { servicePort: number; targetPort: number }[] }> = {};
  for (const [key, ports] of Object.entries(optObj(w.services, `${where}.services`) ?? {})) {
    services[key] = { ports: Object.entries(obj(ports, `${where}.services.${key}`)).map(([sp, tp]) => ({ servicePort: port(sp, `${where}.services.${key}`), targetPort: port(tp, `${where}.services.${key}`) })) };
  }
  const tunnel = optObj(w.applicationTunnel, `${where}.applicationTunnel`);
  const locality = optObj(w.locality, `${where}.locality`);
  return {
    uid: optStr(w.uid, `${where}.uid`) ?? `${(optStr(w.clusterId, `${where}.clusterId`) ?? 'Kubernetes')}//Pod/${namespace}/${name}`,
    name,
    namespace,
    addresses: ips.map((ip, i) => ipBytes(ip, `${where}.workloadIps[${i}]`)),
    hostname: optStr(w.hostname, `${where}.hostname`),
    network: optStr(w.network, `${where}.network`),
    tunnelProtocol: oneOf(w.protocol, `${where}.protocol`, { TCP: 0, HBONE: 1 }, 0),
    trustDomain: optStr(w.trustDomain, `${where}.trustDomain`),
    serviceAccount: optStr(w.serviceAccount, `${where}.serviceAccount`),
    waypoint: gateway(w.waypoint, `${where}.waypoint`),
    networkGateway: gateway(w.networkGateway, `${where}.networkGateway`),
    node: optStr(w.node, `${where}.node`),
    canonicalName: optStr(w.canonicalName, `${where}.canonicalName`),
    canonicalRevision: optStr(w.canonicalRevision, `${where}.canonicalRevision`),
    workloadType: oneOf(w.workloadType, `${where}.workloadType`, { deployment: 0, cronjob: 1, pod: 2, job: 3, Deployment: 0, CronJob: 1, Pod: 2, Job: 3 }, 0),
    workloadName: optStr(w.workloadName, `${where}.workloadName`),
    nativeTunnel: optBool(w.nativeTunnel, `${where}.nativeTunnel`),
    applicationTunnel: tunnel === undefined ? undefined : {
      protocol: oneOf(tunnel.protocol, `${where}.applicationTunnel.protocol`, { NONE: 0, PROXY: 1 }, 0),
      port: tunnel.port === undefined ? undefined : port(tunnel.port, `${where}.applicationTunnel.port`),
    },
    services,
    authorizationPolicies: list(w.authorizationPolicies, `${where}.authorizationPolicies`).map((p, i) => reqStr(p, `${where}.authorizationPolicies[${i}]`)),
    status: oneOf(w.status, `${where}.status`, { Healthy: 0, Unhealthy: 1 }, 0),
    clusterId: optStr(w.clusterId, `${where}.clusterId`),
    locality: locality === undefined ? undefined : { region: optStr(locality.region, 'region'), zone: optStr(locality.zone, 'zone'), subzone: optStr(locality.subzone, 'subzone') },
    networkMode: oneOf(w.networkMode, `${where}.networkMode`, { Standard: 0, HostNetwork: 1 }, 0),
    capacity: w.capacity === undefined ? undefined : { value: int(w.capacity, `${where}.capacity`, 0, 0xffffffff) },
  };
}

function service(s: Obj, where: string): MessageInit<NonNullable<Address['service']>> {
  onlyKeys(s, SERVICE_KEYS, where);
  const lb = optObj(s.loadBalancer, `${where}.loadBalancer`);
  return {
    name: reqStr(s.name, `${where}.name`),
    namespace: reqStr(s.namespace, `${where}.namespace`),
    hostname: reqStr(s.hostname, `${where}.hostname`),
    addresses: list(s.vips, `${where}.vips`).map((v, i) => networkAddress(reqStr(v, `${where}.vips[${i}]`), `${where}.vips[${i}]`)),
    ports: Object.entries(optObj(s.ports, `${where}.ports`) ?? {}).map(([sp, tp]) => ({ servicePort: port(sp, `${where}.ports`), targetPort: port(tp, `${where}.ports`) })),
    subjectAltNames: list(s.subjectAltNames, `${where}.subjectAltNames`).map((x, i) => reqStr(x, `${where}.subjectAltNames[${i}]`)),
    waypoint: gateway(s.waypoint, `${where}.waypoint`),
    weightedWaypoints: list(s.weightedWaypoints, `${where}.weightedWaypoints`).map((x, i) => {
      const at = `${where}.weightedWaypoints[${i}]`;
      const o = obj(x, at);
      onlyKeys(o, ['waypoint', 'weight'], at);
      return { destination: gateway(o.waypoint, `${at}.waypoint`), weight: int(o.weight, `${at}.weight`, 0, 0xffffffff) };
    }),
    loadBalancing: lb === undefined ? undefined : {
      routingPreference: list(lb.routingPreferences, `${where}.loadBalancer.routingPreferences`).map((x, i) => oneOf(x, `${where}.loadBalancer.routingPreferences[${i}]`, { Region: 1, Zone: 2, Subzone: 3, Node: 4, Cluster: 5, Network: 6 }, 0)),
      mode: oneOf(lb.mode, `${where}.loadBalancer.mode`, { Standard: 0, Strict: 1, Failover: 2, Passthrough: 3 }, 0),
      healthPolicy: oneOf(lb.healthPolicy, `${where}.loadBalancer.healthPolicy`, { OnlyHealthy: 0, AllowAll: 1 }, 0),
    },
    ipFamilies: oneOf(s.ipFamilies, `${where}.ipFamilies`, { Automatic: 0, IPv4Only: 1, IPv6Only: 2, Dual: 3 }, 0),
    canonical: optBool(s.canonical, `${where}.canonical`),
    visibility: oneOf(s.visibility, `${where}.visibility`, { Public: 0, Namespace: 1 }, 0),
  };
}

function policy(p: Obj, where: string): MessageInit<Authorization> {
  onlyKeys(p, POLICY_KEYS, where);
  const rules = list(p.rules, `${where}.rules`).map((rule, i) => ({
    clauses: list(rule, `${where}.rules[${i}]`).map((clause, j) => ({
      matches: list(clause, `${where}.rules[${i}][${j}]`).map((m, k) => match(obj(m, `${where}.rules[${i}][${j}][${k}]`), `${where}.rules[${i}][${j}][${k}]`)),
    })),
  }));
  return {
    name: reqStr(p.name, `${where}.name`),
    namespace: optStr(p.namespace, `${where}.namespace`) ?? '',
    scope: oneOf(p.scope, `${where}.scope`, { Global: 0, Namespace: 1, WorkloadSelector: 2 }, 0),
    action: oneOf(p.action, `${where}.action`, { Allow: 0, Deny: 1 }, 0),
    dryRun: optBool(p.dryRun, `${where}.dryRun`),
    rules,
  };
}

function match(m: Obj, where: string): MessageInit<Match> {
  onlyKeys(m, MATCH_KEYS, where);
  const strings = (k: string): MessageInit<StringMatch>[] => list(m[k], `${where}.${k}`).map((x, i) => stringMatch(x, `${where}.${k}[${i}]`));
  const cidrs = (k: string): { address: Buffer; length: number }[] => list(m[k], `${where}.${k}`).map((x, i) => cidr(reqStr(x, `${where}.${k}[${i}]`), `${where}.${k}[${i}]`));
  const ports = (k: string): number[] => list(m[k], `${where}.${k}`).map((x) => port(x, `${where}.${k}`));
  const sas = (k: string): { namespace: string; serviceAccount: string }[] => list(m[k], `${where}.${k}`).map((x, i) => {
    const o = obj(x, `${where}.${k}[${i}]`);
    return { namespace: reqStr(o.namespace, `${where}.${k}[${i}].namespace`), serviceAccount: reqStr(o.serviceAccount, `${where}.${k}[${i}].serviceAccount`) };
  });
  return {
    namespaces: strings('namespaces'), notNamespaces: strings('notNamespaces'),
    principals: strings('principals'), notPrincipals: strings('notPrincipals'),
    serviceAccounts: sas('serviceAccounts'), notServiceAccounts: sas('notServiceAccounts'),
    sourceIps: cidrs('sourceIps'), notSourceIps: cidrs('notSourceIps'),
    destinationIps: cidrs('destinationIps'), notDestinationIps: cidrs('notDestinationIps'),
    destinationPorts: ports('destinationPorts'), notDestinationPorts: ports('notDestinationPorts'),
  };
}

function stringMatch(x: unknown, where: string): MessageInit<StringMatch> {
  const o = obj(x, where);
  const [key, ...rest] = Object.keys(o);
  if (key === undefined || rest.length > 0) throw new LocalConfigError(`${where}: exactly one of Exact, Prefix, Suffix, Presence`);
  switch (key) {
    case 'Exact': return { exact: reqStr(o.Exact, where) };
    case 'Prefix': return { prefix: reqStr(o.Prefix, where) };
    case 'Suffix': return { suffix: reqStr(o.Suffix, where) };
    case 'Presence': return { presence: {} };
    default: throw new LocalConfigError(`${where}: unknown string match '${key}' (Exact, Prefix, Suffix, Presence)`);
  }
}

/** `{destination: "ns/hostname" | "network/ip", hboneMtlsPort?}` */
function gateway(x: unknown, where: string): MessageInit<GatewayAddress> | undefined {
  if (x === undefined || x === null) return undefined;
  const o = obj(x, where);
  onlyKeys(o, ['destination', 'hboneMtlsPort'], where);
  const dest = reqStr(o.destination, `${where}.destination`);
  const mtls = o.hboneMtlsPort === undefined ? 15008 : port(o.hboneMtlsPort, `${where}.hboneMtlsPort`);
  const slash = dest.indexOf('/');
  const right = dest.slice(slash + 1);
  if (slash >= 0 && net.isIP(right) !== 0) return { address: networkAddress(dest, where), hboneMtlsPort: mtls };
  if (slash <= 0) throw new LocalConfigError(`${where}.destination: '${dest}' is neither namespace/hostname nor network/ip`);
  return { hostname: { namespace: dest.slice(0, slash), hostname: right }, hboneMtlsPort: mtls };
}

// ---- primitives -------------------------------------------------------------

function networkAddress(text: string, where: string): MessageInit<NetworkAddress> {
  const slash = text.lastIndexOf('/');
  const network = slash >= 0 ? text.slice(0, slash) : '';
  return { network, address: ipBytes(slash >= 0 ? text.slice(slash + 1) : text, where) };
}

function cidr(text: string, where: string): { address: Buffer; length: number } {
  const [ip = '', len] = text.split('/');
  const address = ipBytes(ip, where);
  const max = address.length * 8;
  const length = len === undefined ? max : Number(len);
  if (!Number.isInteger(length) || length < 0 || length > max) throw new LocalConfigError(`${where}: bad prefix length in '${text}'`);
  return { address, length };
}

export function ipBytes(x: unknown, where: string): Buffer {
  const ip = reqStr(x, where);
  const bytes = ipToBytes(ip);
  if (bytes === undefined) throw new LocalConfigError(`${where}: '${ip}' is not an IP address`);
  return Buffer.from(bytes);
}

function obj(x: unknown, where: string): Obj {
  if (x === null || typeof x !== 'object' || Array.isArray(x)) throw new LocalConfigError(`${where}: expected a mapping`);
  return x as Obj;
}

function optObj(x: unknown, where: string): Obj | undefined {
  return x === undefined || x === null ? undefined : obj(x, where);
}

function list(x: unknown, where: string): unknown[] {
  if (x === undefined || x === null) return [];
  if (!Array.isArray(x)) throw new LocalConfigError(`${where}: expected a list`);
  return x;
}

function onlyKeys(o: Obj, known: readonly string[], where: string): void {
  for (const k of Object.keys(o)) {
    if (!known.includes(k)) throw new LocalConfigError(`${where}: unknown field '${k}'`);
  }
}

function reqStr(x: unknown, where: string): string {
  if (typeof x !== 'string' || x === '') throw new LocalConfigError(`${where}: required string`);
  return x;
}

function optStr(x: unknown, where: string): string | undefined {
  if (x === undefined || x === null) return undefined;
  if (typeof x !== 'string') throw new LocalConfigError(`${where}: expected a string`);
  return x;
}

function optBool(x: unknown, where: string): boolean | undefined {
  if (x === undefined || x === null) return undefined;
  if (typeof x !== 'boolean') throw new LocalConfigError(`${where}: expected true or false`);
  return x;
}

function int(x: unknown, where: string, min: number, max: number): number {
  const n = typeof x === 'string' && /^\d+$/.test(x) ? Number(x) : x;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) throw new LocalConfigError(`${where}: expected an integer ${min}..${max}`);
  return n;
}

function port(x: unknown, where: string): number {
  return int(x, where, 0, 65535);
}

function oneOf(x: unknown, where: string, values: Record<string, number>, dflt: number): number {
  if (x === undefined || x === null) return dflt;
  if (typeof x === 'string' && x in values) return values[x] ?? dflt;
  throw new LocalConfigError(`${where}: ${JSON.stringify(x)} must be one of ${Object.keys(values).join(', ')}`);
}
