// SPDX-License-Identifier: Apache-2.0
// What the HBONE server parses itself from a CONNECT request (the HTTP/2
// framing and HPACK are nghttp2's): the `:authority`
// (proxy/hbone/h2.ts parseAuthority), the `Forwarded` header's host
// (proxy/hbone/headers.ts forwardedHost), and the peer's SPIFFE identity
// from its certificate's URI SAN (identity/spiffe.ts parseSpiffe). Input:
// the three, NUL-separated. The first two answer undefined for garbage;
// parseSpiffe declares IdentityError. Invariants: an accepted authority has
// a port in 1..65535 and an IP (kind ip) or a hostname without ':' and
// prints back to itself; so does an accepted SPIFFE identity.
import net from 'node:net';
import { parseAuthority } from '@skein/ztunnel-compat/proxy/hbone/h2';
import { forwardedHost } from '@skein/ztunnel-compat/proxy/hbone/headers';
import { IdentityError, parseSpiffe, spiffeUri } from '@skein/ztunnel-compat/identity/spiffe';
import { invariant, type FuzzTarget } from '../target.ts';

function split(data: Buffer): [string, string | undefined, string | undefined] {
  const [authority = '', forwarded, san] = data.toString('utf8').split('\0');
  return [authority, forwarded, san];
}

export const target: FuzzTarget = {
  name: 'hbone-connect',
  parser: 'proxy/hbone/h2.ts parseAuthority, proxy/hbone/headers.ts forwardedHost, identity/spiffe.ts parseSpiffe',
  maxLen: 512,
  declared: [IdentityError],
  dictionary: ['[', ']', ':', '::', '.', 'for=', 'host=', ';', ',', '"', '65535', '0', '::ffff:', 'spiffe://', '/ns/', '/sa/', '\0'],
  // As proxy/hbone/h2.test.ts and the outbound path build them.
  seeds: () => [
    Buffer.from('10.1.2.3:8080\0for="10.0.0.1:40000";host=echo.default.svc.cluster.local\0spiffe://cluster.local/ns/default/sa/sleep'),
    Buffer.from('10.1.2.3:8080\0\0spiffe:///ns/default/sa/default'),
    Buffer.from('[2001:db8::1]:443\0for="[fd00::1]:1234"'),
    Buffer.from('reviews.default.svc.cluster.local:9080\0host="a.b"'),
    Buffer.from('[10.0.0.1]:80'),
    Buffer.from('999.1.1.1:80'),
  ],
  run(data) {
    const [authority, forwarded, san] = split(data);
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
    if (san !== undefined) {
      const id = parseSpiffe(san);
      invariant(spiffeUri(id) === san && id.namespace !== '' && id.serviceAccount !== '', `identity ${JSON.stringify(id)} from '${san}'`);
    }
  },
};
