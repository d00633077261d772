// SPDX-License-Identifier: Apache-2.0
// A socket whose connection the native engine took over (it holds a dup of
// the fd): Node's copy closes at the hand-over while the connection lives on
// until the engine reports its end. What counts open sockets
// (istio_tcp_sockets_open) follows the connection, not Node's copy.
import type net from 'node:net';

const kCarried = Symbol('skein.carried');

interface Carried {
  until: Promise<void>;
  end: ((reason: string) => void) | undefined;
}

type Marked = net.Socket & { [kCarried]?: Carried };

/**
 * Marks `socket` as carried until `until` settles; call before destroying
 * Node's copy. `end`, when given, ends the connection before that (its pod
 * left the mesh).
 */
export function markCarried(socket: net.Socket, until: Promise<void>, end?: (reason: string) => void): void {
  (socket as Marked)[kCarried] = { until, end };
}

/** When the connection behind a closed socket ends: undefined when Node's close was its end. */
export function carriedUntil(socket: net.Socket): Promise<void> | undefined {
  return (socket as Marked)[kCarried]?.until;
}

/** How to end the connection behind a closed socket, when whoever carries it can. */
export function carriedEnd(socket: net.Socket): ((reason: string) => void) | undefined {
  return (socket as Marked)[kCarried]?.end;
}
