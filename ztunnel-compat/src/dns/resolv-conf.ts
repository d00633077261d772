// SPDX-License-Identifier: Apache-2.0
// The upstream nameservers, from a resolv.conf (ztunnel forwards to those of
// its own pod: the cluster's DNS service). Pure.
import net from 'node:net';

/** `nameserver` lines, in order; zone suffixes dropped, anything not an IP skipped. */
export function nameservers(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    const ip = m?.[1]?.replace(/%.*$/, '');
    if (ip !== undefined && net.isIP(ip) !== 0) out.push(ip);
  }
  return out;
}
