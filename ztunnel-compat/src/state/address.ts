// SPDX-License-Identifier: Apache-2.0
// Addresses shared by workloads and services: a (network, ip) pair and the
// GatewayAddress a waypoint or network gateway is reached at. Conversions take
// a `fail` callback so each caller throws its own error type (WorkloadError,
// ServiceError) with the same wording.
import type { GatewayAddress as XdsGatewayAddress, NetworkAddress as XdsNetworkAddress } from '../xds/proto.ts';
import { ipFromBytes } from './ip.ts';
import { Interner, str } from './intern.ts';

export interface NetworkAddress {
  readonly network: string;
  /** Canonical text (see ip.ts). */
  readonly ip: string;
}

/** Where a waypoint or network gateway is: a service by name, or an address. */
export type GatewayAddress =
  | { readonly kind: 'hostname'; readonly namespace: string; readonly hostname: string; readonly hboneMtlsPort: number }
  | { readonly kind: 'address'; readonly network: string; readonly ip: string; readonly hboneMtlsPort: number };

/** Throws the caller's error type; never returns. */
export type Fail = (reason: string) => never;

/** Used when istiod leaves GatewayAddress.hbone_mtls_port at 0. */
export const DEFAULT_HBONE_MTLS_PORT = 15008;

export function ipOrFail(bytes: Uint8Array | undefined, fail: Fail): string {
  const ip = ipFromBytes(bytes ?? EMPTY_BYTES);
  // ztunnel WorkloadError::ByteAddressParse wording.
  return ip ?? fail(`failed to parse address, had ${bytes?.length ?? 0} bytes`);
}
const EMPTY_BYTES = new Uint8Array(0);

export function networkAddressFromXds(x: XdsNetworkAddress, fail: Fail): NetworkAddress {
  return { network: str(x.network), ip: ipOrFail(x.address, fail) };
}

/** ztunnel prints a NetworkAddress as `network/ip` (its Display impl, also the xDS alias format). */
export function networkAddressKey(network: string, ip: string): string {
  return `${network}/${ip}`;
}

// Thousands of workloads share a handful of waypoints: keep one frozen copy each.
const gateways = new Interner<GatewayAddress>(100_000);

export function gatewayFromXds(x: XdsGatewayAddress, fail: Fail): GatewayAddress {
  // u16 on the wire in ztunnel (`as u16`); 0 means "not set" here.
  const port = (x.hboneMtlsPort ?? 0) & 0xffff || DEFAULT_HBONE_MTLS_PORT;
  if (x.hostname !== undefined) {
    const namespace = str(x.hostname.namespace);
    const hostname = str(x.hostname.hostname);
    return gateways.get(`h\0${namespace}\0${hostname}\0${port}`, () =>
      Object.freeze({ kind: 'hostname', namespace, hostname, hboneMtlsPort: port }));
  }
  if (x.address !== undefined) {
    const network = str(x.address.network);
    const ip = ipOrFail(x.address.address, fail);
    return gateways.get(`a\0${network}\0${ip}\0${port}`, () =>
      Object.freeze({ kind: 'address', network, ip, hboneMtlsPort: port }));
  }
  // ztunnel WorkloadError::MissingGatewayAddress wording.
  return fail('nonempty gateway address is missing address');
}

/**
 * config_dump form. ztunnel `state/workload.rs`: `GatewayAddress { destination, hbone_mtls_port }`
 * with serde camelCase and an untagged `Destination` whose variants serialize
 * through Display: NamespacedHostname → "namespace/hostname", NetworkAddress →
 * "network/ip". istioctl reads `destination` as a string
 * (istio `istioctl/pkg/writer/ztunnel/configdump/api.go`, `GatewayAddress`).
 */
export function gatewayToConfigDump(g: GatewayAddress): { destination: string; hboneMtlsPort: number } {
  const destination = g.kind === 'hostname' ? `${g.namespace}/${g.hostname}` : networkAddressKey(g.network, g.ip);
  return { destination, hboneMtlsPort: g.hboneMtlsPort };
}
