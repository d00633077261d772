// SPDX-License-Identifier: Apache-2.0
// What the HBONE server parses itself from a CONNECT request (the HTTP/2
// framing and HPACK are nghttp2's): the `:authority`
// (proxy/hbone/h2.ts parseAuthority) and the `Forwarded` header's host
// (proxy/hbone/headers.ts forwardedHost). Input: authority, a NUL, then the
// Forwarded value. Neither declares an error: they answer undefined for
// garbage. Invariants: an accepted authority has a port in 1..65535 and an
// IP (kind ip) or a hostname without ':' and prints back to itself.
import net from 'node:net';
import { parseAuthority } from '@skein/ztunnel-compat/proxy/hbone/h2';
import { forwardedHost } from '@skein/ztunnel-compat/proxy/hbone/headers';
import { invariant, type FuzzTarget } from '../target.ts';

function split(data: Buffer): [string, string | undefined] {
  const nul = data.indexOf(0);
  if (nul === -1) return [data.toString('utf8'), undefined];
  return [data.subarray(0, nul).toString('utf8'), data.subarray(nul + 1).toString('utf8')];
}

export const target: FuzzTarget = {
  name: 'hbone-connect',
  parser: 'proxy/hbone/h2.ts parseAuthority, proxy/hbone/headers.ts forwardedHost',
  maxLen: 512,
  declared: [],
  dictionary: ['[', ']', ':', '::', '.', 'for=', 'host=', ';', ',', '"', '65535', '0', '::ffff:'],
  // As proxy/hbone/h2.test.ts and the outbound path build them.
  seeds: () => [
    Buffer.from('10.1.2.3:8080\0for="10.0.0.1:40000";host=echo.default.svc.cluster.local'),
    Buffer.from('[2001:db8::1]:443\0for="[fd00::1]:1234"'),
    Buffer.from('reviews.default.svc.cluster.local:9080\0host="a.b"'),
    Buffer.from('[10.0.0.1]:80'),
    Buffer.from('999.1.1.1:80'),
  ],
  run(data) {
    const [authority, forwarded] = split(data);
    const a = parseAuthority(authority);
    if (a !== undefined) {
      invariant(Number.isInteger(a.port) && a.port >= 1 && a.port <= 65535, `port ${a.port} accepted`);
      if (a.kind === 'ip') invariant(net.isIP(a.host) !== 0, `kind ip for '${a.host}'`);
      else invariant(a.host.length > 0 && !a.host.includes(':') && net.isIP(a.host) === 0, `hostname '${a.host}' accepted`);
      const printed = a.kind === 'ip' && net.isIPv6(a.host) ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
      const again = parseAuthority(printed);
      invariant(again?.host === a.host && again.port === a.port && again.kind === a.kind, `'${authority}' does not print back to itself`);
    }
    const host = forwardedHost(forwarded === undefined ? {} : { forwarded });
    if (host !== undefined) invariant(host.length > 0 && !/[;,]/.test(host), `Forwarded host '${host}'`);
  },
};
