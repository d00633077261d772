// SPDX-License-Identifier: Apache-2.0
// The PROXY v2 header for a pod that takes an application tunnel (reference
// §6): src = the HBONE client, dst = the CONNECT authority, TLV 0xD0 = the
// peer's SPIFFE identity and, unlike ztunnel, TLV 0xD1 = the service the
// client addressed, so the waypoint behind it can route and log by service.
import { encodeProxyV2, TLV_PEER_IDENTITY, TLV_SERVICE_HOSTNAME } from '@skein/waypoint/proxy-protocol';
import { spiffeUri } from '../identity/spiffe.ts';
import type { Service } from '../state/service.ts';
import type { ConnectRequest } from './hbone/server.ts';

export function appTunnelHeader(req: ConnectRequest, service: Service | undefined): Buffer {
  const tlvs = [{ type: TLV_PEER_IDENTITY, value: Buffer.from(spiffeUri(req.peer)) }];
  if (service !== undefined) tlvs.push({ type: TLV_SERVICE_HOSTNAME, value: Buffer.from(service.hostname) });
  return encodeProxyV2({
    source: { ip: req.peerAddress.ip, port: req.peerAddress.port },
    destination: { ip: req.authority.host, port: req.authority.port },
    tlvs,
  });
}
