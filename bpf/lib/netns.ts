// SPDX-License-Identifier: Apache-2.0
// Network namespaces are named either by an open fd (what istio-cni sends over
// ZDS) or by a path (/proc/<pid>/ns/net, /run/netns/<name>).
import fs from 'node:fs';
import { native } from './native.ts';

export type NetnsRef = number | string;

/** Opens a netns file; the caller owns (and closes) the returned fd. */
export function openNetns(path: string): number {
  if (typeof path !== 'string') throw new TypeError('openNetns: path must be a string');
  return native.openNetns(path);
}

/**
 * Runs `fn` with an fd for `ns`: the fd itself, or one opened from the path
 * and closed afterwards, also when `fn` throws.
 */
export function withNetnsFd<T>(ns: NetnsRef, fn: (fd: number) => T): T {
  if (typeof ns === 'number') {
    if (!Number.isInteger(ns) || ns < 0) throw new TypeError(`netns fd must be a non-negative integer, got ${ns}`);
    return fn(ns);
  }
  const fd = openNetns(ns);
  try {
    return fn(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The netns cookie (SO_NETNS_COOKIE) of a namespace: what eBPF programs see
 * as bpf_get_netns_cookie() for sockets created there. Read from a throwaway
 * socket made in that namespace.
 */
export function netnsCookieOf(ns: NetnsRef): bigint {
  return withNetnsFd(ns, (fd) => {
    const sock = native.createSocket(4, 'stream', fd);
    try {
      return native.netnsCookie(sock);
    } finally {
      fs.closeSync(sock);
    }
  });
}

/**
 * Sets a per-namespace sysctl (a name under net/, slash-separated as in
 * /proc/sys) inside `ns`, e.g. ('net/ipv4/tcp_migrate_req', '1').
 */
export function setNetnsSysctl(ns: NetnsRef, name: string, value: string): void {
  withNetnsFd(ns, (fd) => { native.setNetnsSysctl(fd, name, value); });
}
