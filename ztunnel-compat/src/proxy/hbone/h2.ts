// SPDX-License-Identifier: Apache-2.0
// HTTP/2 facts shared by the HBONE client and server (ztunnel src/proxy/h2/*):
// window and frame sizes, the PING keepalive, and `:authority` parsing.
import type { Http2Session } from 'node:http2';
import { isIPv4, isIPv6 } from 'node:net';

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
 * RST_STREAMs a server session takes (a burst, then per second) before it
 * ends the session with GOAWAY. Node's defaults (1000, then 33/s) would end
 * a mesh client's session, and every tunnel on it, once its workloads abort
 * more than 33 connections a second: each abort resets a stream. ztunnel's
 * server does not limit resets of streams it has accepted. These sit far
 * above the rate one node proxy opens tunnels at (under 2k/s on the bench),
 * so only a flood trips them.
 */
export const SERVER_STREAM_RESET_BURST = 10_000;
export const SERVER_STREAM_RESET_RATE = 10_000;
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
 * PINGs the peer every `intervalMs` (the first after one interval); a PING
 * unanswered for `timeoutMs` destroys the session. One timer per session; the
 * timer is unref'd and stops when the session closes. Detection takes between
 * `timeoutMs` and `timeoutMs + intervalMs`.
 */
export function keepalive(session: Http2Session, opts: KeepaliveOptions = {}): void {
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
      if (Date.now() - sentAt >= timeoutMs) {
        clearInterval(timer);
        session.destroy(new Error(`no PING answer within ${timeoutMs} ms`));
      }
      return;
    }
    try {
      if (session.ping(onPong)) sentAt = Date.now();
    } catch {
      // The session is closing; its 'close' stops the timer.
    }
  }, intervalMs);
  timer.unref();
  session.once('close', () => { clearInterval(timer); });
}
