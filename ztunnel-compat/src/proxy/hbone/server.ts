// SPDX-License-Identifier: Apache-2.0
// The HBONE server (ztunnel inbound :15008, src/proxy/inbound.rs): mTLS with
// the destination pod's certificate, then HTTP/2 CONNECT streams. Each stream
// runs §5.6's checks in order (CONNECT, :authority, then the injected handler
// for destination validation, RBAC and the upstream connect); the 200 goes out
// only once the handler has an upstream, then bytes are copied both ways with
// backpressure and half-close.
// The certificate comes from a source, not a fixed value: every accepted
// connection is served with the source's current valid certificate (fetched
// on demand, within a bound, when there is none), and rotations are pushed,
// so new handshakes use the new certificate while open connections keep
// theirs. An expired certificate is never served: no valid certificate, no
// handshake (ztunnel fetches the certificate per connection the same way).
import { createServer as createH2Server, constants as h2c } from 'node:http2';
import type { Http2Server, Http2Session, IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import { createServer as createNetServer } from 'node:net';
import type { AddressInfo, ListenOptions, Server as NetServer, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer } from 'node:tls';
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import type { HboneDial } from '@skein/bpf';
import type { CertificateSource, WorkloadCertificate } from '../../identity/certificate.ts';
import type { Identity } from '../../identity/spiffe.ts';
import { forward, passEnd } from '../relay.ts';
import { HboneError, HboneErrorCode } from './error.ts';
import {
  CONNECTION_WINDOW, destroySession, keepalive, MAX_FRAME, MAX_SESSION_MEMORY_MB, parseAuthority, pendingResetsOf, SERVER_MAX_CONCURRENT_STREAMS,
  SERVER_MAX_HEADER_LIST, SERVER_STREAM_RESET_BURST, SERVER_STREAM_RESET_RATE, STREAM_WINDOW,
} from './h2.ts';
import type { Authority, KeepaliveOptions } from './h2.ts';
import { revokedError, serverBaseOptions, serverContext } from './tls.ts';
import type { ChainOf, HboneTlsOptions, ServerTls } from './tls.ts';

export interface SocketAddress {
  ip: string;
  port: number;
}

/** What the handler learns about one CONNECT. */
export interface ConnectRequest {
  /** The client's identity: the first SPIFFE URI SAN of its leaf. */
  peer: Identity;
  /** The TCP peer of the HBONE connection. */
  peerAddress: SocketAddress;
  /** The address the HBONE connection was made to (the pod IP, :15008). */
  localAddress: SocketAddress;
  authority: Authority;
  headers: IncomingHttpHeaders;
  /** Aborted when the client resets or the session closes before the handler answered. */
  signal: AbortSignal;
  /**
   * Set by a server that carries the bytes outside Node (the native engine,
   * native-server.ts): the upstream it is handed is closed in Node once the
   * engine has its own copy, so the tunnel's close and end come through here.
   */
  carrier?: TunnelCarrier;
}

/** A tunnel whose bytes another party (the native engine) carries. */
export interface TunnelCarrier {
  /** Closes the tunnel (a policy change revoked it): reset, or never answered 200 if not yet answered. */
  close(reason: string): void;
  /** `fn` runs once, when the tunnel ends; also when a 200 decision never became a tunnel (zero bytes, an error). */
  onEnd(fn: (end: CarriedEnd) => void): void;
  /**
   * Where the carrier can connect the upstream itself (the native engine):
   * it does, answers the client 200 once connected (the handler then
   * returns `{ status: 200, dialed: true }`), and resolves with undefined;
   * or answers an error status and resolves with it and why (503: the
   * connect failed; 401: `close` revoked it meanwhile).
   */
  dial?: (to: HboneDial) => Promise<DialFailure | undefined>;
}

export interface DialFailure {
  status: 401 | 503;
  reason: string;
}

export interface CarriedEnd {
  /** Client → upstream. */
  bytesIn: number;
  /** Upstream → client. */
  bytesOut: number;
  /** Undefined for a clean close both ways, else the first error. */
  error: string | undefined;
}

export type ConnectDecision =
  | { status: 400 | 401 | 503; reason: string }
  | { status: 200; upstream: Duplex; baggage?: string }
  /** The carrier's dial connected the upstream and answered 200. */
  | { status: 200; dialed: true };

/** Destination validation, RBAC and the upstream connect (§5.6 steps 3–7). */
export type ConnectHandler = (req: ConnectRequest) => Promise<ConnectDecision>;

export interface TunnelEnd {
  /** The CONNECT this tunnel served. */
  request: ConnectRequest;
  peer: Identity;
  authority: Authority;
  /** Client → upstream. */
  bytesIn: number;
  /** Upstream → client. */
  bytesOut: number;
  /** From the 200 to the close of both directions. */
  durationMs: number;
  /** 'closed' for a clean close both ways, else the first error's message. */
  reason: string;
}

/** A CONNECT answered with an error status, and who asked. */
export interface StreamRejection {
  status: 400 | 401 | 503;
  reason: string;
  /** The `:authority` as sent, which may not parse. */
  authority: string | undefined;
  peer: Identity;
  peerAddress: SocketAddress;
  localAddress: SocketAddress;
}

/** A connection refused before any stream: TLS failure, no h2, bad identity. */
export interface HandshakeRejection {
  error: Error;
  peerAddress: SocketAddress | undefined;
}

/** A connection refused because there was no valid certificate to serve it with. */
export interface CertificateRefusal {
  /** `expired`: the certificate in use ran out and no new one came; `unavailable`: there never was one. */
  reason: 'expired' | 'unavailable';
  error: Error;
  peerAddress: SocketAddress;
}

export interface HboneServerOptions extends HboneTlsOptions {
  handler: ConnectHandler;
  onTunnelEnd?: (end: TunnelEnd) => void;
  /** A CONNECT answered with an error status (400/401/503). */
  onReject?: (r: StreamRejection) => void;
  onHandshakeReject?: (r: HandshakeRejection) => void;
  /** A stream whose handling threw (a bug): it was reset; the session and its other streams go on. */
  onStreamError?: (err: unknown, session: { peer: Identity; peerAddress: SocketAddress; localAddress: SocketAddress }) => void;
  /** Every TLS connection that completed a handshake, before our checks (for tests and metrics). */
  onSecureConnection?: (socket: TLSSocket) => void;
  keepalive?: KeepaliveOptions;
  /** A connection closed before TLS because no valid certificate could be had (fail closed). */
  onCertificateRefused?: (r: CertificateRefusal) => void;
  /** The certificate now served to new connections changed (first install and rotations). */
  onCertificateInstalled?: (cert: WorkloadCertificate) => void;
  /** How long a connection may wait for an on-demand certificate. Default 5 s. */
  certificateWaitMs?: number;
}

/** A source that always offers the same certificate while it is valid; updateCertificate replaces it. */
export class FixedSource implements CertificateSource {
  cert: WorkloadCertificate;
  constructor(cert: WorkloadCertificate) {
    this.cert = cert;
  }
  current(): WorkloadCertificate | undefined {
    return this.cert.isExpired() ? undefined : this.cert;
  }
  fetch(): Promise<WorkloadCertificate> {
    const cert = this.current();
    return cert === undefined ? Promise.reject(new Error(`the certificate expired at ${this.cert.notAfter.toISOString()}`)) : Promise.resolve(cert);
  }
}

export function isSource(x: WorkloadCertificate | CertificateSource): x is CertificateSource {
  return typeof (x as Partial<CertificateSource>).current === 'function';
}

interface SessionInfo {
  peer: Identity;
  peerAddress: SocketAddress;
  localAddress: SocketAddress;
}

/** A session's peer, TLS socket (for destroySession) and verified chain (kept only under CRLs). */
interface VerifiedSession {
  info: SessionInfo;
  socket: TLSSocket;
  chain: ChainOf | undefined;
}

function addressOf(ip: string | undefined, port: number | undefined): SocketAddress {
  return { ip: ip ?? '', port: port ?? 0 };
}

function stripV4Mapped(ip: string | undefined): string | undefined {
  return ip?.startsWith('::ffff:') === true && ip.includes('.') ? ip.slice(7) : ip;
}

export class HboneServer {
  readonly #tlsServer: TlsServer;
  readonly #h2: Http2Server;
  readonly #opts: HboneServerOptions;
  readonly #source: CertificateSource;
  readonly #unsubscribe: (() => void) | undefined;
  /** What new handshakes are served with; undefined until the first certificate arrives. */
  #tls: ServerTls | undefined;
  #installed: WorkloadCertificate | undefined;
  /** Our own listener (listen()); in-pod mode hands connections to accept() instead. */
  #listener: NetServer | undefined;
  #closing = false;
  /** Each session's peer and its TLS socket (for destroySession). */
  readonly #sessions = new Map<Http2Session, VerifiedSession>();
  /** Set just before handing a verified socket to the h2 server, which emits 'session' synchronously. */
  #pending: VerifiedSession | undefined;
  readonly #unrevoke: (() => void) | undefined;
  #activeTunnels = 0;

  /** `cert`: a source (rotating), or one certificate that serves until it expires. */
  constructor(cert: WorkloadCertificate | CertificateSource, opts: HboneServerOptions) {
    this.#opts = opts;
    this.#source = isSource(cert) ? cert : new FixedSource(cert);
    this.#h2 = createH2Server({
      settings: {
        initialWindowSize: STREAM_WINDOW,
        maxFrameSize: MAX_FRAME,
        maxConcurrentStreams: SERVER_MAX_CONCURRENT_STREAMS,
        maxHeaderListSize: SERVER_MAX_HEADER_LIST,
        enablePush: false,
      },
      maxSessionMemory: MAX_SESSION_MEMORY_MB,
      streamResetBurst: SERVER_STREAM_RESET_BURST,
      streamResetRate: SERVER_STREAM_RESET_RATE,
    });
    this.#h2.on('session', (session: Http2Session) => { this.#onSession(session); });
    this.#h2.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
      // A failure is this stream's alone: reset it, report it, serve the rest.
      this.#onStream(stream, headers).catch((err: unknown) => { this.#streamFailed(stream, err); });
    });
    // No certificate yet: none is needed until a connection is handed over, and each gets one installed first.
    this.#tlsServer = createTlsServer(serverBaseOptions(opts));
    const now = this.#source.current();
    if (now !== undefined) this.#install(now);
    this.#unsubscribe = this.#source.subscribe?.((c) => { if (!this.#closing && !c.isExpired()) this.#install(c); });
    this.#unrevoke = opts.revocation?.onChange(() => { this.#recheckRevocation(); });
    this.#tlsServer.on('secureConnection', (socket: TLSSocket) => { this.#onSecureConnection(socket); });
    this.#tlsServer.on('tlsClientError', (error: Error, socket: TLSSocket) => {
      this.#opts.onHandshakeReject?.({ error, peerAddress: addressOf(socket.remoteAddress, socket.remotePort) });
    });
  }

  /** Rotation: new connections use `cert`; existing ones keep theirs. With a fixed certificate, it becomes the one served. */
  updateCertificate(cert: WorkloadCertificate): void {
    if (this.#source instanceof FixedSource) this.#source.cert = cert;
    this.#install(cert);
  }

  /** The certificate new handshakes get, if one is installed. */
  get certificate(): WorkloadCertificate | undefined {
    return this.#installed;
  }

  listen(opts: ListenOptions = { port: 15008 }): Promise<AddressInfo> {
    const listener = createNetServer((socket) => { this.accept(socket); });
    this.#listener = listener;
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => { reject(err); };
      listener.once('error', onError);
      listener.listen(opts, () => {
        listener.off('error', onError);
        resolve(listener.address() as AddressInfo);
      });
    });
  }

  /**
   * Serves a TCP connection accepted elsewhere (in-pod mode: the pod's
   * :15008 listener lives in the pod netns), or by our own listener. TLS
   * starts with the source's current certificate; without one, the
   * connection waits (bounded) for one fetched on demand, or is refused.
   */
  accept(socket: Socket): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    const cert = this.#source.current();
    if (cert !== undefined) {
      this.#handOver(socket, cert);
      return;
    }
    socket.on('error', () => { /* it may reset while we wait; the wait ends on close */ });
    this.#acceptLater(socket).catch((err: unknown) => { this.#refuse(socket, err); });
  }

  async #acceptLater(socket: Socket): Promise<void> {
    const waitMs = this.#opts.certificateWaitMs ?? 5_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => { reject(new Error(`no certificate within ${waitMs} ms`)); }, waitMs);
    });
    try {
      const cert = await Promise.race([this.#source.fetch(), timeout]);
      if (cert.isExpired()) throw new Error(`the certificate offered expired at ${cert.notAfter.toISOString()}`);
      if (socket.destroyed || this.#closing) {
        socket.destroy();
        return;
      }
      this.#handOver(socket, cert);
    } finally {
      clearTimeout(timer);
    }
  }

  #handOver(socket: Socket, cert: WorkloadCertificate): void {
    if (cert !== this.#installed) this.#install(cert);
    this.#tlsServer.emit('connection', socket);
  }

  /** Fail closed: no valid certificate, no handshake. */
  #refuse(socket: Socket, err: unknown): void {
    // Read before destroy(), which forgets the peer.
    const peerAddress = addressOf(stripV4Mapped(socket.remoteAddress), socket.remotePort);
    socket.destroy();
    const error = err instanceof Error ? err : new Error(String(err));
    const last = this.#installed ?? (this.#source instanceof FixedSource ? this.#source.cert : undefined);
    const reason = last?.isExpired() === true ? 'expired' : 'unavailable';
    this.#opts.onCertificateRefused?.({ reason, error, peerAddress });
  }

  /** New handshakes use `cert` from now on; open connections keep the context they were made with. */
  #install(cert: WorkloadCertificate): void {
    if (cert === this.#installed) return;
    this.#tls = serverContext(cert, this.#opts);
    this.#tlsServer.setSecureContext(this.#tls.options);
    this.#installed = cert;
    this.#opts.onCertificateInstalled?.(cert);
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  get activeTunnels(): number {
    return this.#activeTunnels;
  }

  /**
   * Stops accepting, sends GOAWAY to every session and waits for their
   * tunnels to finish; after `graceMs`, if given, destroys what is left.
   */
  async close(graceMs?: number): Promise<void> {
    this.#stopAccepting();
    const timer = graceMs === undefined ? undefined : setTimeout(() => { this.destroy(); }, graceMs);
    timer?.unref();
    const listener = this.#listener;
    const closed = new Promise<void>((resolve) => {
      if (listener?.listening === true) listener.close(() => { resolve(); });
      else resolve();
    });
    const sessions = [...this.#sessions.keys()].map((s) => new Promise<void>((resolve) => {
      if (s.destroyed) {
        resolve();
        return;
      }
      s.once('close', () => { resolve(); });
      s.close();
    }));
    await Promise.all([closed, ...sessions]);
    clearTimeout(timer);
    this.#unrevoke?.();
  }

  /** Closes every session abruptly. */
  destroy(): void {
    this.#stopAccepting();
    this.#unrevoke?.();
    if (this.#listener?.listening === true) this.#listener.close();
    for (const [session, { socket }] of this.#sessions) destroySession(session, socket);
  }

  /** A CRL reload: sessions of a client whose chain it revokes are torn down at once (as ztunnel: no grace). */
  #recheckRevocation(): void {
    const revocation = this.#opts.revocation;
    if (revocation === undefined) return;
    for (const [session, { socket, chain }] of this.#sessions) {
      const why = chain === undefined ? undefined : revocation.check(chain, 'destination');
      if (why !== undefined) destroySession(session, socket, revokedError('client', why));
    }
  }

  #stopAccepting(): void {
    this.#closing = true;
    this.#unsubscribe?.();
  }

  #onSecureConnection(socket: TLSSocket): void {
    this.#opts.onSecureConnection?.(socket);
    let peer: Identity;
    try {
      // The trust domain is the identity's, the same for every certificate the source gives.
      if (this.#tls === undefined) throw new HboneError(HboneErrorCode.TLS, 'TLS_FAILURE', 'no server certificate');
      peer = this.#tls.verifyPeer(socket);
    } catch (err) {
      // Fail closed: nothing is read from a peer we could not verify.
      socket.destroy();
      this.#opts.onHandshakeReject?.({ error: err as Error, peerAddress: addressOf(socket.remoteAddress, socket.remotePort) });
      return;
    }
    socket.setNoDelay(true);
    this.#pending = {
      info: {
        peer,
        peerAddress: addressOf(stripV4Mapped(socket.remoteAddress), socket.remotePort),
        localAddress: addressOf(stripV4Mapped(socket.localAddress), socket.localPort),
      },
      socket,
      chain: this.#opts.revocation === undefined ? undefined : this.#tls.peerChain(socket),
    };
    try {
      this.#h2.emit('connection', socket);
    } finally {
      this.#pending = undefined;
    }
  }

  #onSession(session: Http2Session): void {
    const pending = this.#pending;
    if (pending === undefined) {
      session.destroy();
      return;
    }
    this.#sessions.set(session, pending);
    session.on('error', () => { /* reported through 'close'; streams see their own errors */ });
    session.once('close', () => { this.#sessions.delete(session); });
    session.setLocalWindowSize(CONNECTION_WINDOW);
    keepalive(session, pending.socket, this.#opts.keepalive);
  }

  #streamFailed(stream: ServerHttp2Stream, err: unknown): void {
    if (!stream.destroyed && !stream.closed) stream.close(h2c.NGHTTP2_INTERNAL_ERROR);
    const info = this.#sessions.get(stream.session as Http2Session)?.info;
    if (info !== undefined) this.#opts.onStreamError?.(err, info);
  }

  #reject(stream: ServerHttp2Stream, info: SessionInfo, status: 400 | 401 | 503, reason: string, authority: string | undefined): void {
    this.#opts.onReject?.({ status, reason, authority, peer: info.peer, peerAddress: info.peerAddress, localAddress: info.localAddress });
    if (stream.destroyed || stream.closed) return;
    stream.respond({ ':status': status }, { endStream: true });
  }

  async #onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<void> {
    stream.on('error', () => { /* handled by the tunnel or ignored before it */ });
    const info = this.#sessions.get(stream.session as Http2Session)?.info;
    const rawAuthority = headers[':authority'];
    if (info === undefined) {
      stream.close(h2c.NGHTTP2_REFUSED_STREAM);
      return;
    }
    if (headers[':method'] !== 'CONNECT') {
      this.#reject(stream, info, 400, `method ${String(headers[':method'])} is not CONNECT`, rawAuthority);
      return;
    }
    const authority = parseAuthority(rawAuthority);
    if (authority === undefined) {
      this.#reject(stream, info, 400, `cannot parse authority ${JSON.stringify(rawAuthority)}`, rawAuthority);
      return;
    }
    const abort = new AbortController();
    const request: ConnectRequest = {
      peer: info.peer, peerAddress: info.peerAddress, localAddress: info.localAddress, authority, headers, signal: abort.signal,
    };
    const onGone = (): void => { abort.abort(new Error('the client went away')); };
    stream.once('close', onGone);
    // Resets of CONNECTs still being answered are bounded as ztunnel's h2 peer bounds them (h2.ts).
    const answered = pendingResetsOf(stream.session as Http2Session).begin(stream);
    let decision: ConnectDecision;
    try {
      decision = await this.#opts.handler(request);
    } catch (err) {
      this.#reject(stream, info, 503, `handler failed: ${(err as Error).message}`, rawAuthority);
      return;
    } finally {
      stream.off('close', onGone);
      answered();
    }
    if (decision.status !== 200) {
      this.#reject(stream, info, decision.status, decision.reason, rawAuthority);
      return;
    }
    if (!('upstream' in decision)) {
      // Only a carrier dials; this server gives none.
      this.#reject(stream, info, 503, 'internal error: no upstream', rawAuthority);
      return;
    }
    const upstream = decision.upstream;
    if (stream.destroyed || stream.closed) {
      // The client went away while we connected.
      upstream.destroy();
      return;
    }
    const resp: Record<string, string | number> = { ':status': 200 };
    if (decision.baggage !== undefined) resp.baggage = decision.baggage;
    try {
      stream.respond(resp);
      this.#tunnel(stream, upstream, request);
    } catch (err) {
      upstream.destroy();
      throw err;
    }
  }

  #tunnel(stream: ServerHttp2Stream, upstream: Duplex, request: ConnectRequest): void {
    this.#activeTunnels++;
    const t = new Tunnel(stream, upstream, request, (end) => {
      this.#activeTunnels--;
      this.#opts.onTunnelEnd?.(end);
    });
    t.start();
  }
}

/**
 * One copy loop: `forward` both ways (backpressure with pause/drain, pooled
 * reads on the upstream socket), and each side's 'end' ends the other:
 * HTTP/2 END_STREAM ⇄ TCP FIN.
 */
class Tunnel {
  readonly stream: ServerHttp2Stream;
  readonly upstream: Duplex;
  readonly request: ConnectRequest;
  readonly onEnd: (end: TunnelEnd) => void;
  readonly startedAt = Date.now();
  bytesIn = 0;
  bytesOut = 0;
  error: Error | undefined = undefined;
  open = 2;
  done = false;

  constructor(stream: ServerHttp2Stream, upstream: Duplex, request: ConnectRequest, onEnd: (end: TunnelEnd) => void) {
    this.stream = stream;
    this.upstream = upstream;
    this.request = request;
    this.onEnd = onEnd;
  }

  start(): void {
    const { stream, upstream } = this;
    stream.on('error', (err: Error) => { this.#fail(err); });
    upstream.on('error', (err: Error) => { this.#fail(err); });
    stream.on('aborted', () => { this.#fail(new Error('the client reset the stream')); });
    stream.once('close', () => {
      // A clean close ended both directions, and pipe has already ended the
      // upstream's write side, which flushes on its own. Anything else (a
      // reset, a session gone) leaves nobody to read the rest: drop it.
      if (!upstream.destroyed && !(stream.readableEnded && stream.writableFinished)) upstream.destroy();
      this.#closed();
    });
    upstream.once('close', () => {
      if (!stream.destroyed && !(stream.writableFinished && stream.readableEnded)) {
        // Upstream gone: finish what was written, then close the stream.
        if (this.error !== undefined) stream.close(h2c.NGHTTP2_CANCEL);
        else if (!stream.writableEnded) stream.end();
      }
      this.#closed();
    });
    forward(stream, upstream, { count: (n) => { this.bytesIn += n; }, coalesce: true });
    forward(upstream, stream, { count: (n) => { this.bytesOut += n; } });
    passEnd(stream, upstream);
    passEnd(upstream, stream);
  }

  #fail(err: Error): void {
    if (this.error !== undefined) return;
    this.error = err;
    if (!this.upstream.destroyed) this.upstream.destroy();
    if (!this.stream.destroyed) this.stream.close(h2c.NGHTTP2_CANCEL);
  }

  #closed(): void {
    if (--this.open > 0 || this.done) return;
    this.done = true;
    this.onEnd({
      request: this.request, peer: this.request.peer, authority: this.request.authority, bytesIn: this.bytesIn, bytesOut: this.bytesOut,
      durationMs: Date.now() - this.startedAt, reason: this.error === undefined ? 'closed' : this.error.message,
    });
  }
}

export { HboneError, HboneErrorCode };
