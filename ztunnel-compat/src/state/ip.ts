// SPDX-License-Identifier: Apache-2.0
// IP addresses in state are canonical strings: IPv4 dotted quad, IPv6 in the
// RFC 5952 form Node prints (libuv's inet_ntop, mixed notation for ::ffff:0:0/96
// and ::/96), so a string compare is an address compare and map keys need no
// normalisation. Conversions from xDS bytes and back to bytes live here.
import { flat } from './intern.ts';

/** The canonical text of a 4- or 16-byte address; undefined for any other length. */
export function ipFromBytes(b: Uint8Array): string | undefined {
  if (b.length === 4) return `${b[0] ?? 0}.${b[1] ?? 0}.${b[2] ?? 0}.${b[3] ?? 0}`;
  if (b.length !== 16) return undefined;
  return ipv6ToString(b);
}

/** Built by appending, so flattened before it is kept (see intern.ts `flat`). */
function ipv6ToString(b: Uint8Array): string {
  const words = new Array<number>(8);
  for (let i = 0; i < 8; i++) words[i] = ((b[2 * i] ?? 0) << 8) | (b[2 * i + 1] ?? 0);
  // The longest run of zero words (two or more); the first one wins a tie.
  let bestBase = -1;
  let bestLen = 0;
  let curBase = -1;
  let curLen = 0;
  for (let i = 0; i < 8; i++) {
    if (words[i] === 0) {
      if (curBase === -1) { curBase = i; curLen = 1; } else curLen++;
      if (curLen > bestLen) { bestBase = curBase; bestLen = curLen; }
    } else {
      curBase = -1;
    }
  }
  if (bestLen < 2) bestBase = -1;
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (bestBase !== -1 && i >= bestBase && i < bestBase + bestLen) {
      if (i === bestBase) out += ':';
      continue;
    }
    if (i !== 0) out += ':';
    // libuv: an embedded IPv4 for ::a.b.c.d and ::ffff:a.b.c.d.
    if (i === 6 && bestBase === 0 && (bestLen === 6 || (bestLen === 5 && words[5] === 0xffff))) {
      out += `${b[12] ?? 0}.${b[13] ?? 0}.${b[14] ?? 0}.${b[15] ?? 0}`;
      return flat(out);
    }
    out += (words[i] ?? 0).toString(16);
  }
  if (bestBase !== -1 && bestBase + bestLen === 8) out += ':';
  return flat(out);
}

/** Bytes of an IPv4 or IPv6 text address (any valid spelling); undefined if it is not one. */
export function ipToBytes(s: string): Uint8Array | undefined {
  return s.includes(':') ? parseV6(s) : parseV4(s);
}

function parseV4(s: string): Uint8Array | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i] ?? '';
    if (!/^\d{1,3}$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    out[i] = n;
  }
  return out;
}

function parseV6(s: string): Uint8Array | undefined {
  let tail: Uint8Array | undefined;
  let text = s;
  const lastColon = s.lastIndexOf(':');
  if (s.includes('.', lastColon)) {
    tail = parseV4(s.slice(lastColon + 1));
    if (tail === undefined) return undefined;
    text = `${s.slice(0, lastColon + 1)}0:0`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const head = halves[0] === '' ? [] : (halves[0] ?? '').split(':');
  const rest = halves.length === 2 ? (halves[1] === '' ? [] : (halves[1] ?? '').split(':')) : [];
  const total = head.length + rest.length;
  if (halves.length === 1 ? total !== 8 : total > 7) return undefined;
  const words = [...head, ...new Array<string>(8 - total).fill('0'), ...rest];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    const w = words[i] ?? '';
    if (!/^[0-9a-fA-F]{1,4}$/.test(w)) return undefined;
    const n = parseInt(w, 16);
    out[2 * i] = n >> 8;
    out[2 * i + 1] = n & 0xff;
  }
  if (tail !== undefined) out.set(tail, 12);
  return out;
}

/** Whether `ip` (bytes) lies in prefix/len; false across address families. */
export function prefixContains(prefix: Uint8Array, len: number, ip: Uint8Array): boolean {
  if (prefix.length !== ip.length) return false;
  const full = len >> 3;
  for (let i = 0; i < full; i++) if (prefix[i] !== ip[i]) return false;
  const bits = len & 7;
  if (bits === 0) return true;
  const mask = (0xff << (8 - bits)) & 0xff;
  return ((prefix[full] ?? 0) & mask) === ((ip[full] ?? 0) & mask);
}
