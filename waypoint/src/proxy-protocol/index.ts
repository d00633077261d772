// SPDX-License-Identifier: Apache-2.0
export { decodeProxyV2, encodeProxyV2, ProxyHeaderError, type Decoded, type Endpoint, type ProxyHeader } from './v2.ts';
export { decodeTlvs, encodeTlvs, TLV_PEER_IDENTITY, TLV_SERVICE_HOSTNAME, TlvError, type Tlv } from './tlv.ts';
