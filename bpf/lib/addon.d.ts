// SPDX-License-Identifier: Apache-2.0
// Types of the native addon (src/addon.cc). Every function validates its
// arguments and throws a TypeError ("Usage: …") or an Error whose `code` is
// the errno name; none of them blocks.

export interface NativeAddress {
  address: string;
  port: number;
  family: 4 | 6;
}

export interface NativeMessage {
  data: Buffer;
  /** The fd that came with the message, or -1. */
  fd: number;
  /** The peer closed its end. */
  eof: boolean;
}

export interface NativeConstants {
  SOL_SOCKET: number;
  SOL_IP: number;
  SOL_IPV6: number;
  IPPROTO_TCP: number;
  SO_MARK: number;
  SO_REUSEADDR: number;
  SO_REUSEPORT: number;
  IP_TRANSPARENT: number;
  IP_FREEBIND: number;
  IPV6_TRANSPARENT: number;
  IPV6_FREEBIND: number;
  IPV6_V6ONLY: number;
  TCP_NODELAY: number;
  UV_READABLE: number;
  UV_WRITABLE: number;
}

export interface NativePoller {
  start(events: number): void;
  stop(): void;
  close(): void;
}

export interface Native {
  constants: NativeConstants;
  openNetns(path: string): number;
  createSocket(family: 4 | 6, kind: 'stream' | 'dgram', netnsFd: number): number;
  setIntOpt(fd: number, level: number, name: number, value: number): void;
  getIntOpt(fd: number, level: number, name: number): number;
  bind(fd: number, address: string, port: number): void;
  listen(fd: number, backlog: number): void;
  localAddress(fd: number): NativeAddress;
  originalDst(fd: number): NativeAddress;
  netnsCookie(fd: number): bigint;
  seqpacketListen(path: string, backlog: number): number;
  seqpacketConnect(path: string): number;
  accept(fd: number): number | null;
  sendMessage(fd: number, data: Buffer, passFd: number): boolean;
  recvMessage(fd: number, maxLength: number): NativeMessage | null;
  Poller: new (fd: number, onEvent: (status: number, events: number) => void) => NativePoller;
  libbpfVersion(): string;
}
