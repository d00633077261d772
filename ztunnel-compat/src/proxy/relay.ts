// SPDX-License-Identifier: Apache-2.0
// Copies bytes both ways between two duplex streams (a pod's socket and its
// upstream: TCP or an HBONE tunnel) with backpressure, relaying half-closes,
// and counts what went each way for metrics and access logs.
import type { Duplex, Writable } from 'node:stream';
import { corkPerTurn } from './coalesce.ts';
import { consumeReads } from './pooled-reads.ts';

export interface RelayResult {
  /** Bytes from `a` delivered to `b`. */
  aToB: number;
  /** Bytes from `b` delivered to `a`. */
  bToA: number;
  error: Error | undefined;
}

export interface ForwardOptions {
  /** Called with each chunk's length as it is written. */
  count: (bytes: number) => void;
  /** Gather the writes of one event-loop turn into one (for a destination socket fed by an HTTP/2 stream). */
  coalesce?: boolean;
}

/**
 * Writes what `from` reads into `to`, pausing `from` while `to` is full.
 * A socket with pooled reads (pooled-reads.ts) gets each buffer back once
 * its write has completed, never earlier: until then `to` refers to it.
 * Ends are not relayed here.
 */
export function forward(from: Duplex, to: Writable, o: ForwardOptions): void {
  const cork = o.coalesce === true ? corkPerTurn(to) : undefined;
  const pooled = consumeReads(from, (chunk, release) => {
    o.count(chunk.length);
    cork?.();
    return to.write(chunk, (err) => { if (err === undefined || err === null) release(); });
  });
  if (!pooled) {
    from.on('data', (chunk: Buffer) => {
      o.count(chunk.length);
      cork?.();
      if (!to.write(chunk)) from.pause();
    });
  }
  to.on('drain', () => from.resume());
}

/**
 * Ends `to` once `from` has ended, also when that happened before the call
 * (a client's FIN while its tunnel was being set up). `then` runs once `to`
 * has taken everything, the end included ('finish').
 */
export function passEnd(from: Duplex, to: Writable, then?: () => void): void {
  const ended = (): void => {
    if (then !== undefined) {
      if (to.writableFinished) then();
      else to.once('finish', then);
    }
    to.end();
  };
  if (from.readableEnded) ended();
  else from.once('end', ended);
}

/**
 * Resolves once both directions are done: each side ended and the other
 * side took everything up to that end. A clean finish closes nothing by
 * force: the sockets close themselves once both ways are through, and an
 * HTTP/2 stream closes with its two END_STREAMs; destroying either earlier
 * would drop a slow reader's tail, or reset the stream (and a peer's
 * rapid-reset guard ends the whole session after enough of those).
 * An error on one side, or a side closing early, destroys both: a broken
 * tunnel is not half-open.
 */
export function relay(a: Duplex, b: Duplex): Promise<RelayResult> {
  return new Promise((resolve) => {
    const result: RelayResult = { aToB: 0, bToA: 0, error: undefined };
    let open = 2;
    let settled = false;
    const settle = (): void => {
      if (settled) return;
      settled = true;
      resolve(result);
    };
    const fail = (err: Error): void => {
      if (settled) return;
      result.error ??= err;
      a.destroy();
      b.destroy();
      settle();
    };
    const halfDone = (): void => {
      if (--open === 0) settle();
    };
    forward(a, b, { count: (n) => { result.aToB += n; } });
    // The pod side is a socket: gather what the upstream delivers per turn.
    forward(b, a, { count: (n) => { result.bToA += n; }, coalesce: true });
    passEnd(a, b, halfDone);
    passEnd(b, a, halfDone);
    a.once('error', fail);
    b.once('error', fail);
    // A side may close once it is through both ways; before that, it was reset.
    const closedEarly = (s: Duplex, what: string) => (): void => {
      if (!(s.readableEnded && s.writableFinished)) fail(result.error ?? new Error(`${what} closed`));
    };
    a.once('close', closedEarly(a, 'downstream'));
    b.once('close', closedEarly(b, 'upstream'));
  });
}
