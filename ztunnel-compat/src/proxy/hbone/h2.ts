// SPDX-License-Identifier: Apache-2.0
// HTTP/2 facts shared by the HBONE client and server (ztunnel src/proxy/h2/*):
// window and frame sizes, the PING keepalive, and `:authority` parsing.
import { constants as h2c, type Http2Session, type ServerHttp2Stream } from 'node:http2';
import { isIPv4, isIPv6 } from 'node:net';
import type { Duplex } from 'node:stream';

const MiB = 1024 * 1024;
/** HTTP2_STREAM_WINDOW_SIZE. */
export const STREAM_WINDOW = 4 * MiB;
/** HTTP2_CONNECTION_WINDOW_SIZE. */
export const CONNECTION_WINDOW = 16 * MiB;
/** HTTP2_FRAME_SIZE. */
export const MAX_FRAME = 1 * MiB;
export const CLIENT_MAX_HEADER_LIST = 16 * 1024;
export const SERVER_MAX_HEADER_LIST = 64 * 1024;
export const SERVER_MAX_CONCURRENT_STREAMS = 200;
/**
 * nghttp2's own RST_STREAM token bucket (a burst, then per second) before
 * it ends a server session with GOAWAY. It counts every reset, those of
 * tunnels long accepted too, which ztunnel's server (the Rust h2 crate)
 * never limits: a mesh client resets a stream whenever its workload aborts
 * a connection, and Node's defaults (1000, then 33/s) would end its pooled
 * session, with every tunnel on it, past 33 aborts a second. So this is only
 * a backstop above the rate one node proxy opens tunnels at (under 2k/s on
 * the bench); the limit ztunnel's peer does apply, on resets of streams not
 * yet answered, is PendingResets below.
 */
export const SERVER_STREAM_RESET_BURST = 10_000;
export const SERVER_STREAM_RESET_RATE = 10_000;
/**
 * The Rust h2 crate's server default `max_pending_accept_reset_streams`
 * (h2 src/proto/mod.rs DEFAULT_REMOTE_RESET_STREAM_MAX = 20, the server
 * Builder's pending_accept_reset_stream_max): streams
 * the peer reset before the server took them up. More at once is the
 * rapid-reset attack (CVE-2023-44487), and the session gets GOAWAY
 * ENHANCE_YOUR_CALM.
 */
export const MAX_PENDING_RESET_STREAMS = 20;
/** POOL_MAX_STREAMS_PER_CONNECTION. */
export const POOL_MAX_STREAMS = 100;
export const PING_INTERVAL_MS = 10_000;
export const PING_TIMEOUT_MS = 20_000;
/**
 * Node's per-session memory cap, in MB. Its default (10) is below one full
 * connection window, and exceeding it makes nghttp2 refuse new streams.
 */
export const MAX_SESSION_MEMORY_MB = 64;

/** A parsed `:authority`: ip:port, [v6]:port, or hostname:port (double HBONE). */
export interface Authority {
  kind: 'ip' | 'hostname';
  /** The IP (without brackets) or the hostname. */
  host: string;
  port: number;
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
const PORT = /^[0-9]{1,5}$/;

/** Parses an HBONE `:authority`; undefined when it is none of the accepted forms. */
export function parseAuthority(value: string | undefined): Authority | undefined {
  if (value === undefined) return undefined;
  const colon = value.lastIndexOf(':');
  if (colon <= 0) return undefined;
  const portText = value.slice(colon + 1);
  if (!PORT.test(portText)) return undefined;
  const port = Number(portText);
  if (port < 1 || port > 65535) return undefined;
  const host = value.slice(0, colon);
  if (host.startsWith('[')) {
    if (!host.endsWith(']')) return undefined;
    const ip = host.slice(1, -1);
    return isIPv6(ip) ? { kind: 'ip', host: ip, port } : undefined;
  }
  if (isIPv4(host)) return { kind: 'ip', host, port };
  if (host.includes(':')) return undefined; // an unbracketed IPv6 literal
  if (/^[0-9.]+$/.test(host)) return undefined; // a malformed dotted quad is not a hostname
  return HOSTNAME.test(host) ? { kind: 'hostname', host, port } : undefined;
}

export interface KeepaliveOptions {
  intervalMs?: number;
  timeoutMs?: number;
}

/**
 * Destroys a session and the socket under it: a session with a write the
 * peer never takes (a full send window) is never done, so it would neither
 * emit 'close' nor let its socket go.
 */
export function destroySession(session: Http2Session, socket: Duplex, err?: Error): void {
  session.destroy(err);
  socket.destroy();
}

/**
 * PINGs the peer every `intervalMs` (the first after one interval); a PING
 * unanswered for `timeoutMs` destroys the session and its `socket`
 * (destroySession). One timer per session; the timer is unref'd and stops when
 * the session closes. Detection takes between `timeoutMs` and `timeoutMs +
 * intervalMs`.
 */
export function keepalive(session: Http2Session, socket: Duplex, opts: KeepaliveOptions = {}): void {
  const intervalMs = opts.intervalMs ?? PING_INTERVAL_MS;
  const timeoutMs = opts.timeoutMs ?? PING_TIMEOUT_MS;
  let sentAt = 0;
  const onPong = (err: Error | null): void => {
    if (err === null) sentAt = 0;
  };
  const timer = setInterval(() => {
    if (session.destroyed || session.closed) {
      clearInterval(timer);
      return;
    }
    if (sentAt !== 0) {
      // The monotonic clock: a wall-clock step (NTP, a resumed VM) must not end every pooled session.
      if (performance.now() - sentAt >= timeoutMs) {
        clearInterval(timer);
        destroySession(session, socket, new Error(`no PING answer within ${timeoutMs} ms`));
      }
      return;
    }
    try {
      if (session.ping(onPong)) sentAt = performance.now();
    } catch {
      // The session is closing; its 'close' stops the timer.
    }
  }, intervalMs);
  timer.unref();
  session.once('close', () => { clearInterval(timer); });
}

/**
 * Per server session: the CONNECTs the peer reset while the server was
 * still answering them (authorizing, dialling the app), as h2 counts the
 * reset streams its application has not accepted yet. HEADERS then
 * RST_STREAM in one burst — the rapid-reset attack — makes work for each
 * stream that the peer never waits for; MAX_CONCURRENT_STREAMS does not
 * bound it, since a reset stream no longer counts. A reset stays counted
 * until its handler has wound down and the event loop has turned once
 * (h2: until the accept loop got to run), so resets arriving faster than
 * the daemon gets round to them pile up; past `max` at once (h2's
 * max_pending_accept_reset_streams) the session is told ENHANCE_YOUR_CALM
 * and closed. A client aborting tunnels one by one never gets near it: each
 * abort costs it a round trip, and each handler gives up its connect as
 * soon as its stream is reset. 'aborted' also fires for a stream the server
 * resets itself; h2's other budget, local_max_error_reset_streams (1024
 * resets the server sends for a peer's stream errors), has no Node knob, but
 * nghttp2 ends the whole session (GOAWAY PROTOCOL_ERROR / STREAM_CLOSED) on
 * the usual triggers, a zero WINDOW_UPDATE or DATA after END_STREAM
 * (measured on Node 24), which is stricter.
 */
export class PendingResets {
  readonly #session: Http2Session;
  readonly #max: number;
  #count = 0;
  #calmed = false;

  constructor(session: Http2Session, max = MAX_PENDING_RESET_STREAMS) {
    this.#session = session;
    this.#max = max;
  }

  get count(): number {
    return this.#count;
  }

  /** A CONNECT being answered; the returned function marks it answered (or given up). */
  begin(stream: ServerHttp2Stream): () => void {
    let counted = false;
    const onAborted = (): void => {
      counted = true;
      if (++this.#count > this.#max) this.#calm();
    };
    stream.once('aborted', onAborted);
    return () => {
      stream.off('aborted', onAborted);
      if (counted) {
        counted = false;
        setImmediate(() => { this.#count--; });
      }
    };
  }

  #calm(): void {
    const s = this.#session;
    if (this.#calmed || s.destroyed || s.closed) return;
    this.#calmed = true;
    // The GOAWAY first; the session goes once it had a turn to be written.
    s.goaway(h2c.NGHTTP2_ENHANCE_YOUR_CALM);
    setImmediate(() => { s.destroy(); });
  }
}

const pendingResets = new WeakMap<Http2Session, PendingResets>();

/** The PendingResets of a stream's session (made on first use). */
export function pendingResetsOf(session: Http2Session): PendingResets {
  let p = pendingResets.get(session);
  if (p === undefined) {
    p = new PendingResets(session);
    pendingResets.set(session, p);
  }
  return p;
}
