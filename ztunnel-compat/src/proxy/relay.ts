// SPDX-License-Identifier: Apache-2.0
// Copies bytes both ways between two duplex streams (a pod's socket and its
// upstream: TCP or an HBONE tunnel) with backpressure, relaying half-closes,
// and counts what went each way for metrics and access logs.
import type { Duplex } from 'node:stream';
import { coalesceWrites } from './coalesce.ts';

export interface RelayResult {
  /** Bytes from `a` delivered to `b`. */
  aToB: number;
  /** Bytes from `b` delivered to `a`. */
  bToA: number;
  error: Error | undefined;
}

/**
 * Resolves once both directions are done (each side ended or either failed).
 * An error on one side destroys the other: a broken tunnel is not half-open.
 */
export function relay(a: Duplex, b: Duplex): Promise<RelayResult> {
  return new Promise((resolve) => {
    const result: RelayResult = { aToB: 0, bToA: 0, error: undefined };
    let open = 2;
    let settled = false;
    const finish = (): void => {
      if (settled) return;
      settled = true;
      a.destroy();
      b.destroy();
      resolve(result);
    };
    const fail = (err: Error): void => {
      result.error ??= err;
      finish();
    };
    const halfDone = (): void => {
      if (--open === 0) finish();
    };
    // The pod side is a socket: gather what the upstream delivers per turn.
    coalesceWrites(b, a);
    a.on('data', (chunk: Buffer) => {
      result.aToB += chunk.length;
      if (!b.write(chunk)) a.pause();
    });
    b.on('data', (chunk: Buffer) => {
      result.bToA += chunk.length;
      if (!a.write(chunk)) b.pause();
    });
    b.on('drain', () => a.resume());
    a.on('drain', () => b.resume());
    a.once('end', () => { b.end(); halfDone(); });
    b.once('end', () => { a.end(); halfDone(); });
    a.once('error', fail);
    b.once('error', fail);
    a.once('close', () => { if (open > 0 && !a.readableEnded) fail(result.error ?? new Error('downstream closed')); });
    b.once('close', () => { if (open > 0 && !b.readableEnded) fail(result.error ?? new Error('upstream closed')); });
  });
}
