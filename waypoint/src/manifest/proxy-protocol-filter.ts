// SPDX-License-Identifier: Apache-2.0
// The Envoy listener filter that makes the sandwiched gateway read the PROXY v2
// header ztunnel (or Skein) writes, and copy the two Istio TLVs into dynamic
// metadata: 0xD0 peer SPIFFE identity, 0xD1 the service the client addressed.
// Field names follow envoy.extensions.filters.listener.proxy_protocol.v3; the
// tests check this fragment against Envoy's own protos.
import { TLV_PEER_IDENTITY, TLV_SERVICE_HOSTNAME } from '../proxy-protocol/tlv.ts';
import { METADATA_KEY_PEER, METADATA_KEY_SERVICE, METADATA_NAMESPACE } from './constants.ts';

export const PROXY_PROTOCOL_FILTER_NAME = 'envoy.filters.listener.proxy_protocol';
export const PROXY_PROTOCOL_TYPE_URL = 'type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol';

/** An `envoy.config.listener.v3.ListenerFilter` in proto-JSON (snake_case, as istio's EnvoyFilter docs write it). */
export function proxyProtocolListenerFilter(): Record<string, unknown> {
  return {
    name: PROXY_PROTOCOL_FILTER_NAME,
    typed_config: {
      '@type': PROXY_PROTOCOL_TYPE_URL,
      rules: [
        { tlv_type: TLV_PEER_IDENTITY, on_tlv_present: { metadata_namespace: METADATA_NAMESPACE, key: METADATA_KEY_PEER } },
        { tlv_type: TLV_SERVICE_HOSTNAME, on_tlv_present: { metadata_namespace: METADATA_NAMESPACE, key: METADATA_KEY_SERVICE } },
      ],
    },
  };
}
