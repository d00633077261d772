// SPDX-License-Identifier: Apache-2.0
// The protobuf boundary for xDS and the CA: loads ztunnel-compat/proto once,
// gives typed encode/decode for the messages Skein exchanges with istiod, and
// hand-built gRPC method definitions that a client and a server can share.
//
// Decoded messages all have one shape (`decodeOptions`):
// - camelCase names.
// - A scalar that holds its proto3 default is absent, except proto3
//   `optional` fields, which are present whenever they were on the wire.
// - Repeated fields are always arrays and maps always objects.
// - Enums are plain numbers: proto3 enums are open, so unknown values survive.
// - Bytes are Buffers (views into the received message).
// - int64 is a number; the only one is a lifetime in seconds.
// - google.protobuf.Any keeps the `type_url` name of protobufjs's bundled copy.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import type { IConversionOptions, Type } from 'protobufjs';
import type { ServiceDefinition } from '@grpc/grpc-js';

/** Where Skein's .proto files live (zds.proto sits there too). */
export const protoDir = fileURLToPath(new URL('../../proto/', import.meta.url));

/**
 * All xDS and CA types. google/protobuf/* imports resolve to protobufjs's
 * bundled copies, so only our own files are read from disk.
 */
export const root: protobuf.Root = new protobuf.Root().loadSync(
  ['workload.proto', 'authorization.proto', 'citadel.proto', 'discovery.proto'].map((f) => path.join(protoDir, f)),
);
root.resolveAll();

export const decodeOptions: IConversionOptions = Object.freeze({
  longs: Number, enums: Number, bytes: Buffer, defaults: false, arrays: true, objects: true,
});

export const ADDRESS_TYPE_URL = 'type.googleapis.com/istio.workload.Address';
export const AUTHORIZATION_TYPE_URL = 'type.googleapis.com/istio.security.Authorization';

// ---- Decoded shapes -------------------------------------------------------

export interface AnyMessage { type_url: string; value: Buffer }
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export interface Value {
  nullValue?: number; numberValue?: number; stringValue?: string; boolValue?: boolean;
  structValue?: Struct; listValue?: { values: Value[] };
}
export interface Struct { fields: Record<string, Value> }

export interface NetworkAddress { network?: string; address?: Buffer; length?: number }
export interface NamespacedHostname { namespace?: string; hostname?: string }
/** One of `hostname` or `address` is set. */
export interface GatewayAddress { hostname?: NamespacedHostname; address?: NetworkAddress; hboneMtlsPort?: number }
export interface WeightedWaypoint { destination?: GatewayAddress; weight?: number }
export interface Port { servicePort?: number; targetPort?: number; appProtocol?: number }
export interface PortList { ports: Port[] }
export interface LoadBalancing { routingPreference: number[]; mode?: number; healthPolicy?: number }
export interface Locality { region?: string; zone?: string; subzone?: string }
export interface ApplicationTunnel { protocol?: number; port?: number }
export interface Extension { name?: string; config?: AnyMessage }

export interface Service {
  name?: string; namespace?: string; hostname?: string;
  addresses: NetworkAddress[]; ports: Port[]; subjectAltNames: string[];
  waypoint?: GatewayAddress; loadBalancing?: LoadBalancing; ipFamilies?: number;
  extensions: Extension[]; canonical?: boolean; ingressUseWaypoint?: boolean;
  weightedWaypoints: WeightedWaypoint[]; visibility?: number;
}

export interface Workload {
  uid?: string; name?: string; namespace?: string;
  addresses: Buffer[]; hostname?: string; network?: string; tunnelProtocol?: number;
  trustDomain?: string; serviceAccount?: string;
  waypoint?: GatewayAddress; networkGateway?: GatewayAddress; node?: string;
  canonicalName?: string; canonicalRevision?: string; workloadType?: number; workloadName?: string;
  nativeTunnel?: boolean; applicationTunnel?: ApplicationTunnel;
  services: Record<string, PortList>; authorizationPolicies: string[];
  status?: number; clusterId?: string; locality?: Locality; networkMode?: number;
  extensions: Extension[]; capacity?: { value?: number };
}

/** The WDS resource: exactly one of the two is set. */
export interface Address { workload?: Workload; service?: Service }

export interface StringMatch { exact?: string; prefix?: string; suffix?: string; presence?: Record<string, never> }
export interface ServiceAccountMatch { namespace?: string; serviceAccount?: string }
export interface IpPrefix { address?: Buffer; length?: number }
export interface Match {
  namespaces: StringMatch[]; notNamespaces: StringMatch[];
  serviceAccounts: ServiceAccountMatch[]; notServiceAccounts: ServiceAccountMatch[];
  principals: StringMatch[]; notPrincipals: StringMatch[];
  sourceIps: IpPrefix[]; notSourceIps: IpPrefix[];
  destinationIps: IpPrefix[]; notDestinationIps: IpPrefix[];
  destinationPorts: number[]; notDestinationPorts: number[];
  extensions: Extension[];
}
export interface Clause { matches: Match[] }
export interface Rule { clauses: Clause[] }
export interface Authorization {
  name?: string; namespace?: string; scope?: number; action?: number;
  rules: Rule[]; dryRun?: boolean; extensions: Extension[];
}

export interface Node { id?: string; cluster?: string; metadata?: Struct }
export interface Status { code?: number; message?: string; details: AnyMessage[] }
export interface DeltaDiscoveryRequest {
  node?: Node; typeUrl?: string;
  resourceNamesSubscribe: string[]; resourceNamesUnsubscribe: string[];
  initialResourceVersions: Record<string, string>;
  responseNonce?: string; errorDetail?: Status;
}
export interface Resource { name?: string; aliases: string[]; version?: string; resource?: AnyMessage }
export interface DeltaDiscoveryResponse {
  systemVersionInfo?: string; resources: Resource[]; typeUrl?: string;
  removedResources: string[]; nonce?: string;
}

export interface IstioCertificateRequest { csr?: string; validityDuration?: number; metadata?: Struct }
export interface IstioCertificateResponse { certChain: string[] }

/** What encode accepts: the decoded shape with every field optional. */
export type MessageInit<T> =
  T extends Buffer ? Uint8Array
    : T extends (infer E)[] ? MessageInit<E>[]
      : T extends object ? { [K in keyof T]?: MessageInit<T[K]> }
        : T;

// ---- Codecs ---------------------------------------------------------------

export interface Codec<T> {
  readonly type: Type;
  readonly encode: (value: MessageInit<T>) => Buffer;
  /** Throws on bytes that are not a valid encoding of the type. */
  readonly decode: (bytes: Uint8Array) => T;
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function codec<T>(name: string): Codec<T> {
  const type = root.lookupType(name);
  return {
    type,
    encode: (value) => asBuffer(type.encode(type.fromObject(value as Record<string, unknown>)).finish()),
    // A Buffer input makes protobufjs hand out Buffer views for bytes fields.
    decode: (bytes) => type.toObject(type.decode(asBuffer(bytes)), decodeOptions) as T,
  };
}

export const codecs = {
  Address: codec<Address>('istio.workload.Address'),
  Workload: codec<Workload>('istio.workload.Workload'),
  Service: codec<Service>('istio.workload.Service'),
  Authorization: codec<Authorization>('istio.security.Authorization'),
  Node: codec<Node>('envoy.config.core.v3.Node'),
  Struct: codec<Struct>('google.protobuf.Struct'),
  Status: codec<Status>('google.rpc.Status'),
  Resource: codec<Resource>('envoy.service.discovery.v3.Resource'),
  DeltaDiscoveryRequest: codec<DeltaDiscoveryRequest>('envoy.service.discovery.v3.DeltaDiscoveryRequest'),
  DeltaDiscoveryResponse: codec<DeltaDiscoveryResponse>('envoy.service.discovery.v3.DeltaDiscoveryResponse'),
  IstioCertificateRequest: codec<IstioCertificateRequest>('istio.v1.auth.IstioCertificateRequest'),
  IstioCertificateResponse: codec<IstioCertificateResponse>('istio.v1.auth.IstioCertificateResponse'),
} as const;

/** The protobufjs Types behind `codecs`, for reflection. */
export const types = Object.fromEntries(
  Object.entries(codecs).map(([name, c]) => [name, c.type]),
) as { readonly [K in keyof typeof codecs]: Type };

// ---- Enums ----------------------------------------------------------------

/** Our TS copy of a proto enum, checked against the loaded .proto at import. */
function protoEnum<const V extends Record<string, number>>(name: string, values: V): Readonly<V> {
  const loaded = root.lookupEnum(name).values;
  const ours = JSON.stringify(Object.entries(values).sort());
  if (JSON.stringify(Object.entries(loaded).sort()) !== ours) {
    throw new Error(`proto.ts: enum ${name} does not match the .proto (${JSON.stringify(loaded)})`);
  }
  return Object.freeze(values);
}

export const TunnelProtocol = protoEnum('istio.workload.TunnelProtocol', { NONE: 0, HBONE: 1, LEGACY_ISTIO_MTLS: 2 });
export const WorkloadStatus = protoEnum('istio.workload.WorkloadStatus', { HEALTHY: 0, UNHEALTHY: 1 });
export const WorkloadType = protoEnum('istio.workload.WorkloadType', { DEPLOYMENT: 0, CRONJOB: 1, POD: 2, JOB: 3 });
export const NetworkMode = protoEnum('istio.workload.NetworkMode', { STANDARD: 0, HOST_NETWORK: 1 });
export const IPFamilies = protoEnum('istio.workload.IPFamilies', { AUTOMATIC: 0, IPV4_ONLY: 1, IPV6_ONLY: 2, DUAL: 3 });
export const AppProtocol = protoEnum('istio.workload.AppProtocol', { UNKNOWN: 0, HTTP11: 1, HTTP2: 2, GRPC: 3, TCP: 4, TLS: 5 });
export const ServiceVisibility = protoEnum('istio.workload.Service.Visibility', { PUBLIC: 0, NAMESPACE: 1 });
export const LoadBalancingScope = protoEnum('istio.workload.LoadBalancing.Scope', {
  UNSPECIFIED_SCOPE: 0, REGION: 1, ZONE: 2, SUBZONE: 3, NODE: 4, CLUSTER: 5, NETWORK: 6,
});
export const LoadBalancingMode = protoEnum('istio.workload.LoadBalancing.Mode', { UNSPECIFIED_MODE: 0, STRICT: 1, FAILOVER: 2, PASSTHROUGH: 3 });
export const HealthPolicy = protoEnum('istio.workload.LoadBalancing.HealthPolicy', { ONLY_HEALTHY: 0, ALLOW_ALL: 1 });
export const ApplicationTunnelProtocol = protoEnum('istio.workload.ApplicationTunnel.Protocol', { NONE: 0, PROXY: 1 });
export const AuthorizationScope = protoEnum('istio.security.Scope', { GLOBAL: 0, NAMESPACE: 1, WORKLOAD_SELECTOR: 2 });
export const AuthorizationAction = protoEnum('istio.security.Action', { ALLOW: 0, DENY: 1 });

// ---- Any-wrapped xDS resources --------------------------------------------

export interface ResourceTypes {
  [ADDRESS_TYPE_URL]: Address;
  [AUTHORIZATION_TYPE_URL]: Authorization;
}
export type ResourceTypeUrl = keyof ResourceTypes;

const resourceCodecs: { readonly [U in ResourceTypeUrl]: Codec<ResourceTypes[U]> } = {
  [ADDRESS_TYPE_URL]: codecs.Address,
  [AUTHORIZATION_TYPE_URL]: codecs.Authorization,
};

export function isResourceTypeUrl(typeUrl: string): typeUrl is ResourceTypeUrl {
  return Object.hasOwn(resourceCodecs, typeUrl);
}

export function packResource<U extends ResourceTypeUrl>(typeUrl: U, value: MessageInit<ResourceTypes[U]>): AnyMessage {
  const c: Codec<ResourceTypes[U]> = resourceCodecs[typeUrl];
  return { type_url: typeUrl, value: c.encode(value) };
}

/** Throws if the Any holds another type or bytes that do not decode. */
export function unpackResource<U extends ResourceTypeUrl>(typeUrl: U, any: AnyMessage): ResourceTypes[U] {
  if (any.type_url !== typeUrl) throw new Error(`expected ${typeUrl}, got ${any.type_url || 'no type_url'}`);
  const c: Codec<ResourceTypes[U]> = resourceCodecs[typeUrl];
  return c.decode(any.value);
}

// ---- google.protobuf.Struct <-> JSON ----------------------------------------

function toValue(v: JsonValue): Value {
  if (v === null) return { nullValue: 0 };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: toStruct(v) };
}

function fromValue(v: Value): JsonValue {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.numberValue !== undefined) return v.numberValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.structValue !== undefined) return fromStruct(v.structValue);
  if (v.listValue !== undefined) return v.listValue.values.map(fromValue);
  return null;
}

export function toStruct(json: Record<string, JsonValue>): Struct {
  return { fields: Object.fromEntries(Object.entries(json).map(([k, v]) => [k, toValue(v)])) };
}

export function fromStruct(struct: Struct | undefined): Record<string, JsonValue> {
  return Object.fromEntries(Object.entries(struct?.fields ?? {}).map(([k, v]) => [k, fromValue(v)]));
}

// ---- gRPC methods -----------------------------------------------------------

/**
 * One definition for both ends: a client writes MessageInit requests and
 * reads decoded responses; a server reads decoded requests and writes
 * MessageInit responses. Assignable to grpc-js's MethodDefinition.
 */
export interface RpcMethod<Req, Res> {
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  readonly requestSerialize: (value: MessageInit<Req>) => Buffer;
  readonly requestDeserialize: (bytes: Buffer) => Req;
  readonly responseSerialize: (value: MessageInit<Res>) => Buffer;
  readonly responseDeserialize: (bytes: Buffer) => Res;
}

function rpc<Req, Res>(path: string, stream: boolean, req: Codec<Req>, res: Codec<Res>): RpcMethod<Req, Res> {
  return {
    path,
    requestStream: stream,
    responseStream: stream,
    requestSerialize: (v) => req.encode(v),
    requestDeserialize: (b) => req.decode(b),
    responseSerialize: (v) => res.encode(v),
    responseDeserialize: (b) => res.decode(b),
  };
}

export const deltaAggregatedResources = rpc(
  '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources',
  true, codecs.DeltaDiscoveryRequest, codecs.DeltaDiscoveryResponse,
);

export const createCertificate = rpc(
  '/istio.v1.auth.IstioCertificateService/CreateCertificate',
  false, codecs.IstioCertificateRequest, codecs.IstioCertificateResponse,
);

export const aggregatedDiscoveryService = { DeltaAggregatedResources: deltaAggregatedResources } satisfies ServiceDefinition;
export const istioCertificateService = { CreateCertificate: createCertificate } satisfies ServiceDefinition;
