// SPDX-License-Identifier: Apache-2.0
// PROXY protocol v2 headers (waypoint/src/proxy-protocol), as a sandwiched
// waypoint's inbound listener or any PROXY-speaking peer sends them.
// Declared errors: ProxyHeaderError, TlvError. Invariants: a decoded header
// never claims more bytes than were given, and re-encodes to a header that
// decodes to the same value.
import assert from 'node:assert/strict';
import { decodeProxyV2, encodeProxyV2, ProxyHeaderError, TLV_PEER_IDENTITY, TLV_SERVICE_HOSTNAME, TlvError } from '@skein/waypoint/proxy-protocol';
import { invariant, type FuzzTarget } from '../target.ts';

const ID = 'spiffe://cluster.local/ns/default/sa/sleep';
const SVC = 'echo.default.svc.cluster.local';
const SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

export const target: FuzzTarget = {
  name: 'proxy-v2',
  parser: 'waypoint/src/proxy-protocol decodeProxyV2',
  maxLen: 1024,
  declared: [ProxyHeaderError, TlvError],
  dictionary: [SIGNATURE, Buffer.from([0x21, 0x11]), Buffer.from([0x21, 0x21]), Buffer.from([0x20, 0x00]), Buffer.from([TLV_PEER_IDENTITY]), Buffer.from([TLV_SERVICE_HOSTNAME])],
  // As waypoint/src/proxy-protocol/v2.test.ts builds them.
  seeds: () => [
    encodeProxyV2({ source: { ip: '10.0.0.1', port: 40000 }, destination: { ip: '10.96.0.30', port: 80 }, tlvs: [{ type: TLV_PEER_IDENTITY, value: Buffer.from('ab') }] }),
    Buffer.concat([
      encodeProxyV2({ source: { ip: 'fd00::1', port: 1234 }, destination: { ip: 'fd00::2', port: 8080 }, tlvs: [{ type: TLV_PEER_IDENTITY, value: Buffer.from(ID) }, { type: TLV_SERVICE_HOSTNAME, value: Buffer.from(SVC) }] }),
      Buffer.from('GET / HTTP/1.1\r\n'),
    ]),
    encodeProxyV2({ source: { ip: '10.0.0.1', port: 1 }, destination: { ip: 'fd00::1', port: 2 }, tlvs: [] }),
    encodeProxyV2({ source: { ip: '10.0.0.1', port: 1 }, destination: { ip: '10.0.0.2', port: 2 }, tlvs: [{ type: TLV_PEER_IDENTITY, value: Buffer.from(ID) }, { type: 0x02, value: Buffer.from('echo.example') }, { type: TLV_SERVICE_HOSTNAME, value: Buffer.from(SVC) }] }),
    Buffer.from('GET / HTTP/1.1\r\n\r\n'),
  ],
  run(data) {
    const d = decodeProxyV2(data);
    if (d === undefined) return;
    invariant(d.length >= 16 && d.length <= data.length, `decoded length ${d.length} for ${data.length} input bytes`);
    const again = decodeProxyV2(encodeProxyV2(d.header));
    try {
      assert.deepEqual(again?.header, d.header);
    } catch (err) {
      invariant(false, `header does not round-trip: ${(err as Error).message}`);
    }
  },
};
