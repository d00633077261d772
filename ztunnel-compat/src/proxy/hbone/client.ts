// SPDX-License-Identifier: Apache-2.0
// The HBONE client and its connection pool (ztunnel src/proxy/pool.rs,
// src/proxy/h2/client.rs): mTLS to a peer's :15008 (no SNI, no resumption,
// SPIFFE identity check before any byte of HTTP/2 is sent), one HTTP/2
// session carrying up to min(maxStreams, peer MAX_CONCURRENT_STREAMS) CONNECT
// streams, first connects per key serialised, sessions dropped on GOAWAY or
// close and released after an idle period. Sessions are keyed by the client
// certificate too: after a rotation new tunnels get new sessions handshaken
// with the new certificate (older sessions finish their streams). An expired
// certificate is never presented, so a session made with it (its key holds
// the serial) never gets another stream.
import { connect as h2connect, constants as h2c } from 'node:http2';
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders, OutgoingHttpHeaders, Settings } from 'node:http2';
import { isIPv6 } from 'node:net';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import type { WorkloadCertificate } from '../../identity/certificate.ts';
import { spiffeUri } from '../../identity/spiffe.ts';
import type { Identity } from '../../identity/spiffe.ts';
import { HboneError, HboneErrorCode } from './error.ts';
import type { HboneFlag } from './error.ts';
import {
  CLIENT_MAX_HEADER_LIST, CONNECTION_WINDOW, destroySession, keepalive, MAX_FRAME, MAX_SESSION_MEMORY_MB, POOL_MAX_STREAMS, STREAM_WINDOW,
} from './h2.ts';
import type { KeepaliveOptions } from './h2.ts';
import { ALPN_H2, clientOptions, revokedError, serverChainOf } from './tls.ts';
import type { ChainOf } from './tls.ts';
import type { HboneTlsOptions } from './tls.ts';

export { baggageHeader, forwardedHeader, traceparent } from './headers.ts';
export type { BaggageFields } from './headers.ts';

export interface TunnelRequest {
  /** The source workload's certificate, presented to the peer. */
  cert: WorkloadCertificate;
  /** The server leaf must carry one of these SPIFFE identities. */
  expected: readonly Identity[];
  /** The peer's HBONE address (ip:15008, or a waypoint/gateway). */
  upstream: { ip: string; port: number };
  /** `:authority`: ip:port, [v6]:port, or hostname:port. */
  authority: string;
  /** Extra request headers (baggage, forwarded, traceparent, ...). */
  headers?: OutgoingHttpHeaders;
  /** Bind address for the TCP connection (ignored with createSocket). */
  localAddress?: string;
  /** Supplies the raw TCP socket (in the pod netns, SO_MARK'd); connected here if it is not already. */
  createSocket?: () => Socket;
  /** Which sessions may carry this tunnel; defaults to src identity | expected | upstream | localAddress. The certificate's serial is always added. */
  poolKey?: string;
}

export interface HboneClientOptions extends HboneTlsOptions {
  /** POOL_MAX_STREAMS_PER_CONNECTION; the peer's MAX_CONCURRENT_STREAMS wins when lower. Default 100. */
  maxStreams?: number;
  /** POOL_UNUSED_RELEASE_TIMEOUT: a session with no stream for this long is closed. Default 5 min. */
  idleTimeoutMs?: number;
  /** TCP + TLS + SETTINGS must complete within this. Default 10 s. */
  connectTimeoutMs?: number;
  keepalive?: KeepaliveOptions;
  /**
   * Streams a session opens in its life; then it leaves the pool and closes
   * with its last stream. Default STREAM_IDS_PER_CONNECTION: past it Node
   * fails every request on the session (ERR_HTTP2_OUT_OF_STREAMS).
   */
  streamsPerConnection?: number;
}

/** Client stream ids in HTTP/2: odd, 31 bits. */
export const STREAM_IDS_PER_CONNECTION = 2 ** 30;

/** A tunnel and the CONNECT response headers (the peer's `baggage`, for metrics labels). */
export interface OpenedTunnel {
  tunnel: ClientHttp2Stream;
  responseHeaders: IncomingHttpHeaders;
}

interface PooledSession {
  readonly session: ClientHttp2Session;
  /** The session's TLS socket, for destroySession. */
  readonly socket: TLSSocket;
  readonly key: string;
  readonly limit: number;
  active: number;
  /** Streams it has opened in its life. */
  opened: number;
  usable: boolean;
  idleTimer: NodeJS.Timeout | undefined;
  /** The server's chain for CRL re-checks at each reload; only under CRLs. */
  readonly chain: ChainOf | undefined;
}

interface PoolEntry {
  sessions: PooledSession[];
  opening: Promise<PooledSession> | undefined;
}

/** Stream failures whose CONNECT the peer never took (so it may be sent again). */
const unanswered = new WeakSet<HboneError>();

export function defaultPoolKey(req: TunnelRequest): string {
  return `${spiffeUri(req.cert.identity)}|${req.expected.map(spiffeUri).join(',')}|${req.upstream.ip}:${req.upstream.port}|${req.localAddress ?? ''}`;
}

function tlsFlag(err: unknown): HboneFlag {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('ERR_SSL') ? 'TLS_FAILURE' : 'H2_HANDSHAKE_FAILURE';
}

export class HboneClient {
  readonly #opts: HboneClientOptions;
  readonly #maxStreams: number;
  readonly #idleMs: number;
  readonly #streamsPerConnection: number;
  readonly #entries = new Map<string, PoolEntry>();
  readonly #all = new Set<PooledSession>();
  readonly #unsubscribe: (() => void) | undefined;
  #closed = false;

  constructor(opts: HboneClientOptions = {}) {
    this.#opts = opts;
    this.#maxStreams = opts.maxStreams ?? POOL_MAX_STREAMS;
    this.#idleMs = opts.idleTimeoutMs ?? 5 * 60_000;
    this.#streamsPerConnection = opts.streamsPerConnection ?? STREAM_IDS_PER_CONNECTION;
    this.#unsubscribe = opts.revocation?.onChange(() => { this.#recheckRevocation(); });
  }

  /** Live sessions (pooled or draining). */
  get sessionCount(): number {
    return this.#all.size;
  }

  /** Pooled sessions for one pool key, whatever certificate they were made with. */
  sessionsFor(key: string): number {
    let n = 0;
    for (const [k, e] of this.#entries) if (k.slice(0, k.lastIndexOf('|')) === key) n += e.sessions.length;
    return n;
  }

  /** Opens a tunnel; resolves on 200. Rejects with HboneError (`status` + flag CONNECT for a non-200 answer). */
  async connect(req: TunnelRequest): Promise<Duplex> {
    return (await this.open(req)).tunnel;
  }

  /**
   * A CONNECT the peer never took — refused (REFUSED_STREAM), or cut off by a
   * GOAWAY or a session close before any answer, as when the peer's node
   * proxy is being replaced — is sent once more on another session. That is
   * safe: no byte of the tunnel has been sent before its 200.
   */
  async open(req: TunnelRequest): Promise<OpenedTunnel> {
    try {
      return await this.#openOnce(req);
    } catch (err) {
      if (!(err instanceof HboneError) || !unanswered.has(err)) throw err;
      return this.#openOnce(req);
    }
  }

  async #openOnce(req: TunnelRequest): Promise<OpenedTunnel> {
    if (req.cert.isExpired()) {
      throw new HboneError(HboneErrorCode.CERT_EXPIRED, 'CONNECT',
        `the certificate of ${spiffeUri(req.cert.identity)} expired at ${req.cert.notAfter.toISOString()}; it is never presented`);
    }
    // The serial: a rotated certificate never rides on a session made with the old one.
    const ps = await this.#acquire(`${req.poolKey ?? defaultPoolKey(req)}|${req.cert.serial}`, req);
    let stream: ClientHttp2Stream;
    try {
      stream = ps.session.request({ ...req.headers, ':method': 'CONNECT', ':authority': req.authority }, { endStream: false });
    } catch (err) {
      this.#release(ps);
      throw new HboneError(HboneErrorCode.STREAM, 'CONNECT', `cannot open a stream: ${(err as Error).message}`, { cause: err });
    }
    stream.once('close', () => { this.#release(ps); });
    return new Promise<OpenedTunnel>((resolve, reject) => {
      const onResponse = (headers: IncomingHttpHeaders): void => {
        cleanup();
        const status = Number(headers[':status']);
        if (status === 200) {
          resolve({ tunnel: stream, responseHeaders: headers });
          return;
        }
        stream.on('error', () => { /* being discarded */ });
        stream.close(h2c.NGHTTP2_CANCEL);
        reject(new HboneError(HboneErrorCode.STATUS, 'CONNECT', `${req.authority} via ${req.upstream.ip}:${req.upstream.port} answered HTTP ${status}`, { status }));
      };
      const onError = (err: Error): void => {
        cleanup();
        // Read before destroy(): whether the peer refused it, or its session went away first.
        const refused = stream.rstCode === h2c.NGHTTP2_REFUSED_STREAM || !ps.usable;
        stream.on('error', () => { /* being discarded */ });
        stream.destroy();
        const e = new HboneError(HboneErrorCode.STREAM, 'CONNECT', `CONNECT ${req.authority} failed: ${err.message}`, { cause: err });
        if (refused) {
          // Not this session again: a peer that refuses is going away or full.
          this.#drop(ps);
          unanswered.add(e);
        }
        reject(e);
      };
      const onClose = (): void => { onError(new Error(`stream closed before a response (code ${stream.rstCode})`)); };
      const cleanup = (): void => {
        stream.off('response', onResponse);
        stream.off('error', onError);
        stream.off('close', onClose);
      };
      stream.once('response', onResponse);
      stream.once('error', onError);
      stream.once('close', onClose);
    });
  }

  /**
   * Closes every session gracefully (GOAWAY; open tunnels finish). After
   * `graceMs`, if given, what is still open is destroyed.
   */
  async close(graceMs?: number): Promise<void> {
    this.#closed = true;
    this.#unsubscribe?.();
    const timer = graceMs === undefined ? undefined : setTimeout(() => { this.destroy(); }, graceMs);
    timer?.unref();
    await Promise.all([...this.#all].map((ps) => new Promise<void>((resolve) => {
      this.#drop(ps);
      if (ps.session.destroyed) {
        resolve();
        return;
      }
      ps.session.once('close', () => { resolve(); });
      ps.session.close();
    })));
    clearTimeout(timer);
  }

  destroy(): void {
    this.#closed = true;
    this.#unsubscribe?.();
    for (const ps of this.#all) destroySession(ps.session, ps.socket);
  }

  /**
   * A CRL reload: sessions to a server whose chain it revokes are torn down
   * at once, their tunnels with them (a security event, as ztunnel: no
   * GOAWAY grace).
   */
  #recheckRevocation(): void {
    const revocation = this.#opts.revocation;
    if (revocation === undefined) return;
    for (const ps of this.#all) {
      const why = ps.chain === undefined ? undefined : revocation.check(ps.chain, 'source');
      if (why === undefined) continue;
      this.#drop(ps);
      destroySession(ps.session, ps.socket, revokedError('server', why));
    }
  }

  async #acquire(key: string, req: TunnelRequest): Promise<PooledSession> {
    for (;;) {
      if (this.#closed) throw new HboneError(HboneErrorCode.CLOSED, 'CONNECT', 'the HBONE pool is closed');
      let entry = this.#entries.get(key);
      if (entry === undefined) {
        entry = { sessions: [], opening: undefined };
        this.#entries.set(key, entry);
      }
      for (const ps of entry.sessions) {
        if (ps.usable && ps.active < ps.limit) {
          ps.active++;
          // Counted as it is taken (takers may be several before their requests):
          // the last stream id leaves the pool, and it closes when its streams end (#release).
          if (++ps.opened >= this.#streamsPerConnection) this.#drop(ps);
          if (ps.idleTimer !== undefined) {
            clearTimeout(ps.idleTimer);
            ps.idleTimer = undefined;
          }
          return ps;
        }
      }
      if (entry.opening !== undefined) {
        // Serialised: wait for the session being opened, then look again. Its failure is ours too.
        await entry.opening;
        continue;
      }
      const opening = this.#open(key, req);
      entry.opening = opening;
      try {
        await opening;
      } finally {
        if (entry.opening === opening) entry.opening = undefined;
        if (entry.sessions.length === 0 && entry.opening === undefined) this.#entries.delete(key);
      }
    }
  }

  #release(ps: PooledSession): void {
    ps.active--;
    if (ps.active !== 0) return;
    // Out of the pool (a refused stream) and idle: nothing can use it again.
    // A GOAWAY's or a close's session is ending anyway.
    if (!ps.usable) {
      if (!ps.session.closed && !ps.session.destroyed) ps.session.close();
      return;
    }
    ps.idleTimer = setTimeout(() => {
      ps.idleTimer = undefined;
      if (ps.active !== 0) return;
      this.#drop(ps);
      ps.session.close();
    }, this.#idleMs);
    ps.idleTimer.unref();
  }

  /** Takes a session out of the pool; its open streams carry on. */
  #drop(ps: PooledSession): void {
    ps.usable = false;
    if (ps.idleTimer !== undefined) {
      clearTimeout(ps.idleTimer);
      ps.idleTimer = undefined;
    }
    const entry = this.#entries.get(ps.key);
    if (entry === undefined) return;
    const i = entry.sessions.indexOf(ps);
    if (i >= 0) entry.sessions.splice(i, 1);
    if (entry.sessions.length === 0 && entry.opening === undefined) this.#entries.delete(ps.key);
  }

  #open(key: string, req: TunnelRequest): Promise<PooledSession> {
    const { ip, port } = req.upstream;
    const target = `${ip}:${port}`;
    return new Promise<PooledSession>((resolve, reject) => {
      let tlsSocket: TLSSocket | undefined;
      let session: ClientHttp2Session | undefined;
      let settled = false;
      const fail = (err: HboneError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (session !== undefined) session.destroy();
        tlsSocket?.destroy();
        reject(err);
      };
      const timeoutMs = this.#opts.connectTimeoutMs ?? 10_000;
      const timer = setTimeout(() => {
        fail(new HboneError(HboneErrorCode.H2_HANDSHAKE, session === undefined ? 'TLS_FAILURE' : 'H2_HANDSHAKE_FAILURE',
          `HBONE connect to ${target} timed out after ${timeoutMs} ms (maybe a NetworkPolicy is blocking HBONE port ${port})`));
      }, timeoutMs);
      timer.unref();

      const tlsOpts = clientOptions(req.cert, req.expected, this.#opts);
      const raw = req.createSocket?.();
      if (raw !== undefined) {
        if (!raw.connecting && raw.remoteAddress === undefined) raw.connect({ host: ip, port });
        tlsSocket = tlsConnect({ ...tlsOpts, socket: raw });
      } else {
        tlsSocket = tlsConnect({ ...tlsOpts, host: ip, port, ...(req.localAddress === undefined ? {} : { localAddress: req.localAddress }) });
      }
      const sock = tlsSocket;
      const onTlsError = (err: Error): void => {
        if (err instanceof HboneError) fail(err);
        else if ((err as NodeJS.ErrnoException).syscall === 'connect') {
          fail(new HboneError(HboneErrorCode.TCP, 'CONNECT', `cannot connect to ${target}: ${err.message}`, { cause: err }));
        } else fail(new HboneError(HboneErrorCode.TLS, 'TLS_FAILURE', `TLS handshake with ${target} failed: ${err.message}`, { cause: err }));
      };
      sock.once('error', onTlsError);
      sock.once('secureConnect', () => {
        sock.off('error', onTlsError);
        if (sock.alpnProtocol !== ALPN_H2) {
          fail(new HboneError(HboneErrorCode.ALPN, 'TLS_FAILURE', `${target} did not negotiate ALPN h2`));
          return;
        }
        sock.setNoDelay(true);
        // Only now, with the peer's identity checked, does any HTTP/2 byte go out.
        const s = h2connect(`https://${isIPv6(ip) ? `[${ip}]` : ip}:${port}`, {
          createConnection: () => sock,
          settings: {
            enablePush: false,
            initialWindowSize: STREAM_WINDOW,
            maxFrameSize: MAX_FRAME,
            maxHeaderListSize: CLIENT_MAX_HEADER_LIST,
          },
          maxSessionMemory: MAX_SESSION_MEMORY_MB,
          peerMaxConcurrentStreams: this.#maxStreams,
        });
        session = s;
        const onH2Error = (err: Error): void => {
          fail(new HboneError(HboneErrorCode.H2_HANDSHAKE, tlsFlag(err), `HTTP/2 handshake with ${target} failed: ${err.message}`, { cause: err }));
        };
        const onEarlyClose = (): void => {
          fail(new HboneError(HboneErrorCode.H2_HANDSHAKE, 'H2_HANDSHAKE_FAILURE', `${target} closed the connection before its SETTINGS (did it reject our certificate?)`));
        };
        s.once('error', onH2Error);
        s.once('close', onEarlyClose);
        s.once('remoteSettings', (settings: Settings) => {
          s.off('error', onH2Error);
          s.off('close', onEarlyClose);
          if (settled) return;
          const chain = this.#opts.revocation === undefined ? undefined : serverChainOf(sock, req.cert);
          // CRLs reloaded since checkServerIdentity, before this session joins the pool: checked again now.
          const why = chain === undefined ? undefined : this.#opts.revocation?.check(chain, 'source');
          if (why !== undefined) {
            fail(revokedError('server', why));
            return;
          }
          settled = true;
          clearTimeout(timer);
          const peerMax = settings.maxConcurrentStreams ?? Number.MAX_SAFE_INTEGER;
          const ps: PooledSession = {
            session: s, socket: sock, key, limit: Math.max(1, Math.min(this.#maxStreams, peerMax)), active: 0, opened: 0, usable: true, idleTimer: undefined, chain,
          };
          this.#adopt(ps);
          resolve(ps);
        });
        s.setLocalWindowSize(CONNECTION_WINDOW);
      });
    });
  }

  #adopt(ps: PooledSession): void {
    const { session } = ps;
    this.#all.add(ps);
    let entry = this.#entries.get(ps.key);
    if (entry === undefined) {
      entry = { sessions: [], opening: undefined };
      this.#entries.set(ps.key, entry);
    }
    entry.sessions.push(ps);
    session.on('error', () => { this.#drop(ps); });
    session.on('goaway', () => { this.#drop(ps); });
    session.once('close', () => {
      this.#drop(ps);
      this.#all.delete(ps);
    });
    keepalive(session, ps.socket, this.#opts.keepalive);
    if (this.#closed) {
      this.#drop(ps);
      session.close();
    }
  }
}
