// SPDX-License-Identifier: Apache-2.0
// TCP sockets that Node owns but that were created where Node cannot create
// them (inside a pod's netns) or with options Node cannot set (SO_MARK,
// IP_TRANSPARENT, …). The addon makes and configures the fd; Node adopts it.
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import { constants as c, native } from './native.ts';
import type { NativeAddress } from './addon.d.ts';
import { withNetnsFd, type NetnsRef } from './netns.ts';

export type SocketAddress = NativeAddress;

export interface SocketOptions {
  /** SO_MARK: the mark istio-cni's rules use to let proxy traffic through. */
  mark?: number;
  /** SO_REUSEPORT, so a restarting proxy can bind next to the old one. */
  reusePort?: boolean;
  /** IP_TRANSPARENT / IPV6_TRANSPARENT: bind to an address not on this host. */
  transparent?: boolean;
  /** IP_FREEBIND / IPV6_FREEBIND: bind to an address not (yet) configured. */
  freebind?: boolean;
  /** TCP_NODELAY. */
  noDelay?: boolean;
  /** SO_KEEPALIVE with TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT (Node's setKeepAlive sets only the first two). */
  keepalive?: TcpKeepalive;
}

/** TCP keepalive probing (ztunnel's SocketConfig keepalive_*). */
export interface TcpKeepalive {
  /** Idle time before the first probe, in seconds (TCP_KEEPIDLE, 1..32767). */
  timeSeconds: number;
  /** Between unanswered probes, in seconds (TCP_KEEPINTVL, 1..32767). */
  intervalSeconds: number;
  /** Unanswered probes before the connection is dropped (TCP_KEEPCNT, 1..127). */
  retries: number;
}

function checkKeepalive(k: TcpKeepalive): void {
  const bad = (v: number, max: number): boolean => !Number.isInteger(v) || v < 1 || v > max;
  // The kernel's own bounds (MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT).
  if (bad(k.timeSeconds, 32767) || bad(k.intervalSeconds, 32767) || bad(k.retries, 127)) {
    throw new RangeError(`keepalive: time and interval must be 1..32767 s and retries 1..127, got ${k.timeSeconds}/${k.intervalSeconds}/${k.retries}`);
  }
}

export interface CreateOptions extends SocketOptions {
  /** Create the socket inside this network namespace (default: our own). */
  netns?: NetnsRef;
  /** Keep writing after the peer's FIN (a proxy relays half-closes). */
  allowHalfOpen?: boolean;
}

export interface ListenOptions extends CreateOptions {
  address: string;
  port: number;
  backlog?: number;
}

export interface ConnectOptions extends CreateOptions {
  address: string;
  port: number;
  /** Source address to bind before connecting (with `transparent`, any IP). */
  localAddress?: string;
  localPort?: number;
  /** Read into buffers the caller supplies (net.Socket's `onread`). */
  onread?: net.OnReadOpts;
}

type Family = 4 | 6;

function familyOf(address: string, what: string): Family {
  const f = net.isIP(address);
  if (f === 0) throw new TypeError(`${what}: not an IP address: '${address}'`);
  return f as Family;
}

function checkPort(port: unknown, what: string): number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`${what}: port must be an integer 0-65535, got ${String(port)}`);
  }
  return port;
}

/** Applies options to a raw socket fd of the given family. */
function applyToFd(fd: number, family: Family, o: SocketOptions): void {
  if (o.mark !== undefined) {
    if (!Number.isInteger(o.mark) || o.mark < 0 || o.mark > 0xffffffff) {
      throw new RangeError(`mark must be a 32-bit unsigned integer, got ${o.mark}`);
    }
    native.setIntOpt(fd, c.SOL_SOCKET, c.SO_MARK, o.mark | 0);
  }
  if (o.reusePort !== undefined) native.setIntOpt(fd, c.SOL_SOCKET, c.SO_REUSEPORT, o.reusePort ? 1 : 0);
  if (o.transparent !== undefined) {
    const [level, name] = family === 4 ? [c.SOL_IP, c.IP_TRANSPARENT] : [c.SOL_IPV6, c.IPV6_TRANSPARENT];
    native.setIntOpt(fd, level, name, o.transparent ? 1 : 0);
  }
  if (o.freebind !== undefined) {
    const [level, name] = family === 4 ? [c.SOL_IP, c.IP_FREEBIND] : [c.SOL_IPV6, c.IPV6_FREEBIND];
    native.setIntOpt(fd, level, name, o.freebind ? 1 : 0);
  }
  if (o.noDelay !== undefined) native.setIntOpt(fd, c.IPPROTO_TCP, c.TCP_NODELAY, o.noDelay ? 1 : 0);
  if (o.keepalive !== undefined) {
    checkKeepalive(o.keepalive);
    native.setIntOpt(fd, c.IPPROTO_TCP, c.TCP_KEEPIDLE, o.keepalive.timeSeconds);
    native.setIntOpt(fd, c.IPPROTO_TCP, c.TCP_KEEPINTVL, o.keepalive.intervalSeconds);
    native.setIntOpt(fd, c.IPPROTO_TCP, c.TCP_KEEPCNT, o.keepalive.retries);
    native.setIntOpt(fd, c.SOL_SOCKET, c.SO_KEEPALIVE, 1);
  }
}

/** Creates a configured, non-blocking socket fd; closes it on any error. */
function createFd(family: Family, kind: 'stream' | 'dgram', o: CreateOptions, then: (fd: number) => void): number {
  const fd = o.netns === undefined
    ? native.createSocket(family, kind, -1)
    : withNetnsFd(o.netns, (ns) => native.createSocket(family, kind, ns));
  try {
    // Listeners of both families share ports, so a v6 socket stays v6-only.
    if (family === 6) native.setIntOpt(fd, c.SOL_IPV6, c.IPV6_V6ONLY, 1);
    applyToFd(fd, family, o);
    then(fd);
    return fd;
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}

/** The fd under a Node socket or server (Linux, TCP/pipe handles). */
export function fdOf(s: net.Socket | net.Server): number {
  const fd = (s as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('socket has no open fd (not connected, listening, or already closed)');
  return fd;
}

/** Sets options on a socket Node already owns. */
export function setSocketOptions(s: net.Socket | net.Server, o: SocketOptions): void {
  const fd = fdOf(s);
  // Only the IP-level options depend on the family: the others (keepalive on
  // every pod-side socket) spare the getsockname.
  const family = o.transparent !== undefined || o.freebind !== undefined ? native.localAddress(fd).family : 4;
  applyToFd(fd, family, o);
}

/** Reads an integer socket option (for checks and tests). */
export function getSocketOption(s: net.Socket | net.Server, level: number, name: number): number {
  return native.getIntOpt(fdOf(s), level, name);
}

/**
 * A listening TCP socket on address:port with the given options, optionally
 * inside another namespace; the fd is the caller's (listenTcp hands it to a
 * net.Server, the native HBONE engine accepts on it itself).
 */
export function listenFd(o: ListenOptions): number {
  const family = familyOf(o.address, 'listenTcp');
  const port = checkPort(o.port, 'listenTcp');
  return createFd(family, 'stream', o, (fd) => {
    // As Node's own listeners: connections of an earlier listener still in
    // TIME_WAIT must not keep a restarted one from binding.
    native.setIntOpt(fd, c.SOL_SOCKET, c.SO_REUSEADDR, 1);
    native.bind(fd, o.address, port);
    native.listen(fd, o.backlog ?? 511);
  });
}

/**
 * Listens on address:port with the given options, optionally inside another
 * namespace, and hands the listening fd to a net.Server.
 */
export async function listenTcp(o: ListenOptions, onConnection?: (socket: net.Socket) => void): Promise<net.Server> {
  const backlog = o.backlog ?? 511;
  const fd = listenFd(o);
  // No per-connection TCP_NODELAY or keepalive calls: an accepted socket
  // inherits both from the listener (set above by createFd).
  const server = net.createServer({ allowHalfOpen: o.allowHalfOpen ?? false }, onConnection);
  // From here Node owns the fd and closes it with the server.
  return await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ fd, backlog }, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

/**
 * Connects to address:port from a socket made with the given options (and,
 * when set, bound to localAddress first), returning the net.Socket at once;
 * it emits 'connect' or 'error' like net.connect().
 */
export function connectTcp(o: ConnectOptions): net.Socket {
  const family = familyOf(o.address, 'connectTcp');
  const port = checkPort(o.port, 'connectTcp');
  if (o.localAddress !== undefined && familyOf(o.localAddress, 'connectTcp localAddress') !== family) {
    throw new TypeError(`connectTcp: localAddress ${o.localAddress} is not of the same family as ${o.address}`);
  }
  const fd = createFd(family, 'stream', o, (fd) => {
    if (o.localAddress !== undefined || o.localPort !== undefined) {
      native.bind(fd, o.localAddress ?? (family === 4 ? '0.0.0.0' : '::'), checkPort(o.localPort ?? 0, 'connectTcp'));
    }
  });
  const socket = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: o.allowHalfOpen ?? false, ...(o.onread === undefined ? {} : { onread: o.onread }) });
  return socket.connect({ port, host: o.address });
}

export interface UdpOptions extends CreateOptions {
  address: string;
  /** 0: any free port. */
  port: number;
}

/**
 * A UDP socket bound to address:port with the given options, optionally
 * inside another namespace, handed to a dgram.Socket (which then owns the fd).
 */
export async function bindUdp(o: UdpOptions): Promise<dgram.Socket> {
  const family = familyOf(o.address, 'bindUdp');
  const port = checkPort(o.port, 'bindUdp');
  const fd = createFd(family, 'dgram', o, (fd) => { native.bind(fd, o.address, port); });
  const socket = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
  return await new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ fd }, () => {
      socket.off('error', reject);
      resolve(socket);
    });
  });
}

/** The destination before iptables REDIRECT (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST). */
export function originalDst(s: net.Socket): SocketAddress {
  return native.originalDst(fdOf(s));
}

/** SO_NETNS_COOKIE: the kernel's id for the namespace a socket lives in. */
export function netnsCookie(s: net.Socket | net.Server): bigint {
  return native.netnsCookie(fdOf(s));
}
