// SPDX-License-Identifier: Apache-2.0
// Plain TCP connects to an upstream (an app, or a passthrough destination) as
// ztunnel makes them: bounded by its 10 s connect timeout, abandoned at once
// when the connection they serve is gone, and with TCP keepalive on the
// socket (KEEPALIVE_*), as on the pod-side sockets (which inherit it from
// their listener, inpod/listeners.ts).
import type net from 'node:net';

/** ztunnel src/proxy.rs `CONNECTION_TIMEOUT` (used by freebind_connect). */
export const CONNECT_TIMEOUT_MS = 10_000;

/**
 * Resolves once `socket` connected (undefined), or with why it did not: an
 * error, a close (someone destroyed it, e.g. a policy re-check), `signal`
 * aborting, or `timeoutMs` passing. On every outcome but success the socket
 * is destroyed, so nothing is left half-open.
 */
export function connected(socket: net.Socket, timeoutMs: number, signal?: AbortSignal): Promise<Error | undefined> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (err: Error | undefined): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('connect', onConnect);
      socket.off('error', onError);
      socket.off('close', onClose);
      signal?.removeEventListener('abort', onAbort);
      if (err !== undefined) socket.destroy();
      resolve(err);
    };
    const onConnect = (): void => { finish(undefined); };
    const onError = (err: Error): void => { finish(err); };
    const onClose = (): void => { finish(new Error('closed before the connection was established')); };
    const onAbort = (): void => { finish(new Error('the client went away while connecting')); };
    const timer = setTimeout(() => { finish(new Error(`connection timed out after ${timeoutMs} ms`)); }, timeoutMs);
    socket.once('connect', onConnect);
    socket.once('error', onError);
    socket.once('close', onClose);
    if (signal?.aborted === true) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
}
