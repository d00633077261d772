// SPDX-License-Identifier: Apache-2.0
// PROXY protocol v2 headers for TCP over IPv4/IPv6 with TLVs. The header
// itself (signature, version/command, family, addresses) comes from
// proxy-protocol-js; it has no notion of TLVs — its `data` is appended after
// the addresses but left out of the length field, and its parser hands back
// everything after the addresses — so this module appends the TLVs, counts
// them in the length, and splits them from the payload when decoding.
import { isIPv4, isIPv6 } from 'node:net';
import pp from 'proxy-protocol-js';
import { decodeTlvs, encodeTlvs, type Tlv } from './tlv.ts';

export interface Endpoint {
  ip: string;
  port: number;
}

export interface ProxyHeader {
  source: Endpoint;
  destination: Endpoint;
  tlvs: Tlv[];
}

export class ProxyHeaderError extends Error {
  override name = 'ProxyHeaderError';
}

/** "\r\n\r\n\0\r\nQUIT\n": checked here too, so a partial header can be told from garbage. */
const SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const SIGNATURE_LEN = SIGNATURE.length;
/** Signature, version/command, family/transport, length. */
const FIXED_LEN = 16;
const LENGTH_OFFSET = 14;

/** A PROXY (command) STREAM header; both addresses must be of one family (IPv4 is mapped into IPv6 when they differ). */
export function encodeProxyV2(h: ProxyHeader): Buffer {
  const tlvs = encodeTlvs(h.tlvs);
  const v4 = isIPv4(h.source.ip) && isIPv4(h.destination.ip);
  const address = v4
    ? new pp.IPv4ProxyAddress(pp.IPv4Address.createFrom(v4Bytes(h.source.ip)), port(h.source.port), pp.IPv4Address.createFrom(v4Bytes(h.destination.ip)), port(h.destination.port))
    : new pp.IPv6ProxyAddress(pp.IPv6Address.createFrom(v6Bytes(h.source.ip)), port(h.source.port), pp.IPv6Address.createFrom(v6Bytes(h.destination.ip)), port(h.destination.port));
  const out = Buffer.from(new pp.V2ProxyProtocol(pp.Command.PROXY, pp.TransportProtocol.STREAM, address, tlvs).build());
  const len = address.getLength() + tlvs.length;
  if (len > 0xffff) throw new ProxyHeaderError(`header body of ${len} bytes does not fit the 16-bit length`);
  out.writeUInt16BE(len, LENGTH_OFFSET);
  return out;
}

export interface Decoded {
  header: ProxyHeader;
  /** Bytes the header took; the payload starts there. */
  length: number;
}

/**
 * Decodes the header at the start of `input`: undefined while it is
 * incomplete, a ProxyHeaderError when it is not a v2 PROXY header for TCP
 * over IPv4/IPv6 or its TLVs are malformed.
 */
export function decodeProxyV2(input: Buffer): Decoded | undefined {
  const seen = input.subarray(0, SIGNATURE_LEN);
  if (!SIGNATURE.subarray(0, seen.length).equals(seen)) throw new ProxyHeaderError('not a PROXY v2 signature');
  if (input.length < FIXED_LEN) return undefined;
  const total = FIXED_LEN + input.readUInt16BE(LENGTH_OFFSET);
  if (input.length < total) return undefined;
  let parsed;
  try {
    parsed = pp.V2ProxyProtocol.parse(input.subarray(0, total));
  } catch (err) {
    throw new ProxyHeaderError(`bad PROXY v2 header: ${(err as { message?: string }).message ?? String(err)}`);
  }
  if (parsed.command !== pp.Command.PROXY || parsed.transportProtocol !== pp.TransportProtocol.STREAM) {
    throw new ProxyHeaderError('only PROXY over STREAM is accepted');
  }
  const a = parsed.proxyAddress;
  let source: Endpoint;
  let destination: Endpoint;
  if (a instanceof pp.IPv4ProxyAddress) {
    source = { ip: a.sourceAddress.address.join('.'), port: a.sourcePort };
    destination = { ip: a.destinationAddress.address.join('.'), port: a.destinationPort };
  } else if (a instanceof pp.IPv6ProxyAddress) {
    source = { ip: v6Text(a.sourceAddress.address), port: a.sourcePort };
    destination = { ip: v6Text(a.destinationAddress.address), port: a.destinationPort };
  } else {
    throw new ProxyHeaderError('only IPv4 and IPv6 addresses are accepted');
  }
  const tlvs = decodeTlvs(Buffer.from(parsed.data ?? new Uint8Array()));
  return { header: { source, destination, tlvs }, length: total };
}


function port(p: number): number {
  if (!Number.isInteger(p) || p < 0 || p > 0xffff) throw new ProxyHeaderError(`port ${p} out of range`);
  return p;
}

function v4Bytes(ip: string): number[] {
  return ip.split('.').map(Number);
}

/** 16 bytes of an IPv6 address, an IPv4 one mapped (::ffff:a.b.c.d). */
function v6Bytes(ip: string): number[] {
  if (isIPv4(ip)) return [...Array<number>(10).fill(0), 0xff, 0xff, ...v4Bytes(ip)];
  if (!isIPv6(ip)) throw new ProxyHeaderError(`'${ip}' is not an IP address`);
  let text = ip;
  const tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.', lastColon)) {
    tail.push(...v4Bytes(text.slice(lastColon + 1)));
    text = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const [head = '', rest] = text.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = rest === undefined || rest === '' ? [] : rest.split(':');
  const groups = rest === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  const bytes = groups.flatMap((g) => { const n = parseInt(g, 16); return [n >> 8, n & 0xff]; });
  if (tail.length > 0) bytes.splice(12, 4, ...tail);
  return bytes;
}

function v6Text(bytes: readonly number[]): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  // Node's own formatter gives the canonical (RFC 5952) text.
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}
