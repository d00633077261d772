// SPDX-License-Identifier: Apache-2.0
// The HBONE server (:15008) on the native engine: HboneServer's contract
// (server.ts), with the TLS and HTTP/2 in the engine. The engine checks the
// client's chain and that it has a SPIFFE SAN in our trust domain (given by
// us), then hands each CONNECT here; the checks and the handler (destination
// validation, authz in decide/, the upstream connect) run in TypeScript as
// for the JavaScript server, and the answer goes back with the upstream's fd.
// One event per session start and end, one per request, one per tunnel end.
// Certificates as HboneServer's: each connection gets the source's current
// valid one (fetched on demand, bounded, when there is none); an expired one
// is never served. The request carries a TunnelCarrier: the upstream socket
// is closed in Node once the engine has it, so the handler learns of the
// tunnel's end (bytes, error) and closes it (a policy change) through that.
import { Socket } from 'node:net';
import type { IncomingHttpHeaders } from 'node:http2';
import { fdOf } from '@skein/bpf';
import type { HboneEngineEvent } from '@skein/bpf';
import type { CertificateSource, WorkloadCertificate } from '../../identity/certificate.ts';
import { parseSpiffe } from '../../identity/spiffe.ts';
import type { Identity } from '../../identity/spiffe.ts';
import { markCarried } from '../carried.ts';
import { ChurnTable } from '../churn-table.ts';
import { HboneError, HboneErrorCode } from './error.ts';
import { parseAuthority, type Authority } from './h2.ts';
import { drainReadable } from './native-client.ts';
import type { InboundPort, NativeHboneClient } from './native-client.ts';
import { FixedSource, isSource } from './server.ts';
import type { CarriedEnd, ConnectDecision, ConnectRequest, DialFailure, HboneServerOptions, SocketAddress, TunnelCarrier } from './server.ts';

interface Tunnel {
  /** Made only when a handler reads the request's signal (the native dial never does). */
  controller: AbortController | undefined;
  request: ConnectRequest | undefined;
  /** Answered 200: its end is a TunnelEnd. */
  open: boolean;
  openedAt: number;
  /** Closed by the handler's carrier before the answer: answered 401 instead. */
  revoked: string | undefined;
  /** The carrier's end listeners, and the end once known. */
  listeners: ((end: CarriedEnd) => void)[];
  end: CarriedEnd | undefined;
  /** While the engine connects the upstream (the carrier's dial): its outcome. */
  dialing: ((failure: DialFailure | undefined) => void) | undefined;
  /** The engine has answered the client already (a dial that failed). */
  answered: boolean;
}

/** The reason an ended tunnel's signal carries (a shared one: no DOMException per tunnel). */
const TUNNEL_ENDED = new Error('the tunnel ended');

/**
 * A CONNECT as the handler sees it. Its abort signal is made on first read:
 * an AbortController and its abort event per tunnel were a few percent of a
 * connection churn's main thread, for a signal only the JavaScript upstream
 * connect reads. A class, for the getter on its prototype: a getter in an
 * object literal, one per request, made V8 promote each request's objects
 * to the old generation (the server daemon under conn-churn: 180-320 KiB a
 * scavenge, 4 KiB with this class; test/bench/churn-gc.ts shows both).
 */
class EngineRequest implements ConnectRequest {
  readonly peer: Identity;
  readonly peerAddress: SocketAddress;
  readonly localAddress: SocketAddress;
  readonly authority: Authority;
  readonly headers: IncomingHttpHeaders;
  readonly carrier: TunnelCarrier;
  readonly #tunnel: Tunnel;

  constructor(tunnel: Tunnel, peer: Identity, s: Session, authority: Authority, headers: IncomingHttpHeaders, carrier: TunnelCarrier) {
    this.#tunnel = tunnel;
    this.peer = peer;
    this.peerAddress = s.peerAddress;
    this.localAddress = s.localAddress;
    this.authority = authority;
    this.headers = headers;
    this.carrier = carrier;
  }

  get signal(): AbortSignal {
    const t = this.#tunnel;
    if (t.controller === undefined) {
      t.controller = new AbortController();
      if (t.end !== undefined) t.controller.abort(TUNNEL_ENDED);
    }
    return t.controller.signal;
  }
}

interface Session {
  peer: Identity | undefined;
  peerAddress: SocketAddress;
  localAddress: SocketAddress;
  /** By stream id (a ChurnTable: one per tunnel). */
  tunnels: ChurnTable<Tunnel>;
  /** The engine is done with the connection. */
  gone: () => void;
}

function addressOf(ip: string | undefined, port: number | undefined): SocketAddress {
  const v4 = ip?.startsWith('::ffff:') === true && ip.includes('.') ? ip.slice(7) : ip;
  return { ip: v4 ?? '', port: port ?? 0 };
}

/** fields: method, authority, then name, value, …; repeated names joined as Node joins them. */
function headersOf(fields: readonly string[]): IncomingHttpHeaders {
  const h: IncomingHttpHeaders = { ':method': fields[0] ?? '', ':authority': fields[1] ?? '' };
  for (let i = 2; i + 1 < fields.length; i += 2) {
    const name = fields[i] ?? '';
    const value = fields[i + 1] ?? '';
    const have = h[name];
    h[name] = have === undefined ? value : `${String(have)}, ${value}`;
  }
  return h;
}

export class NativeHboneServer {
  readonly #port: InboundPort;
  readonly #opts: HboneServerOptions;
  readonly #source: CertificateSource;
  readonly #unsubscribe: (() => void) | undefined;
  #installed: WorkloadCertificate | undefined;
  readonly #sessions = new Map<number, Session>();
  /** Resolved whenever the last session is gone (close() waits on it). */
  #drained: (() => void) | undefined;
  #activeTunnels = 0;
  #closed = false;

  /** `cert`: a source (rotating), or one certificate that serves until it expires. */
  constructor(client: NativeHboneClient, cert: WorkloadCertificate | CertificateSource, opts: HboneServerOptions) {
    this.#port = client.inboundPort();
    this.#source = isSource(cert) ? cert : new FixedSource(cert);
    this.#opts = opts;
    const now = this.#source.current();
    if (now !== undefined) this.#install(now);
    this.#unsubscribe = this.#source.subscribe?.((c) => { if (!this.#closed && !c.isExpired()) this.#install(c); });
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  get activeTunnels(): number {
    return this.#activeTunnels;
  }

  /** The certificate new handshakes get, if one is installed. */
  get certificate(): WorkloadCertificate | undefined {
    return this.#installed;
  }

  /** Rotation: new connections use `cert`; open ones keep theirs. With a fixed certificate, it becomes the one served. */
  updateCertificate(cert: WorkloadCertificate): void {
    if (this.#source instanceof FixedSource) this.#source.cert = cert;
    this.#install(cert);
  }

  /**
   * Serves a TCP connection accepted on 15008; Node's copy is closed once
   * the engine has its own. Without a valid certificate the connection waits
   * (bounded) for one fetched on demand, or is refused: no handshake.
   */
  accept(socket: Socket): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    const cert = this.#source.current();
    if (cert !== undefined) {
      this.#handOver(socket, cert);
      return;
    }
    // The client's first flight (its ClientHello) must stay in the kernel for
    // the engine, which reads the socket itself: Node reads nothing meanwhile.
    (socket as unknown as { _handle?: { readStop?: () => void } })._handle?.readStop?.();
    socket.on('error', () => { /* it may reset while we wait */ });
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
      if (socket.destroyed || this.#closed) {
        socket.destroy();
        return;
      }
      this.#handOver(socket, cert);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Fail closed: no valid certificate, no handshake. */
  #refuse(socket: Socket, err: unknown): void {
    const peerAddress = addressOf(socket.remoteAddress, socket.remotePort);
    socket.destroy();
    const error = err instanceof Error ? err : new Error(String(err));
    const last = this.#installed ?? (this.#source instanceof FixedSource ? this.#source.cert : undefined);
    const reason = last?.isExpired() === true ? 'expired' : 'unavailable';
    this.#opts.onCertificateRefused?.({ reason, error, peerAddress });
  }

  #install(cert: WorkloadCertificate): void {
    if (cert === this.#installed) return;
    this.#installed = cert;
    this.#opts.onCertificateInstalled?.(cert);
  }

  #handOver(socket: Socket, cert: WorkloadCertificate): void {
    // Checked again at the moment of use: never an expired one.
    if (cert.isExpired()) {
      this.#refuse(socket, new HboneError(HboneErrorCode.CERT_EXPIRED, 'TLS_FAILURE', `the certificate expired at ${cert.notAfter.toISOString()}`));
      return;
    }
    if (socket.readableLength > 0) {
      // Bytes of the TLS handshake Node read cannot be given to the engine: refused, not hung.
      const peerAddress = addressOf(socket.remoteAddress, socket.remotePort);
      socket.destroy();
      this.#opts.onHandshakeReject?.({ error: new HboneError(HboneErrorCode.TLS, 'TLS_FAILURE', 'the TLS handshake began before the hand-over to the engine'), peerAddress });
      return;
    }
    this.#install(cert);
    const s: Session = {
      peer: undefined,
      peerAddress: addressOf(socket.remoteAddress, socket.remotePort),
      localAddress: addressOf(socket.localAddress, socket.localPort),
      tunnels: new ChurnTable(),
      gone: () => undefined,
    };
    const released = new Promise<void>((resolve) => { s.gone = resolve; });
    const id = this.#port.open((ev) => { this.#onEvent(id, s, ev); });
    this.#sessions.set(id, s);
    try {
      // The credential is the certificate's: a rotated one gets a new SSL_CTX, sessions on the old keep theirs.
      this.#port.engine.inbound({ session: id, fd: fdOf(socket), credential: this.#port.credential(cert), trustDomain: cert.identity.trustDomain });
    } catch (err) {
      this.#forget(id);
      socket.destroy();
      throw err;
    }
    markCarried(socket, released);
    socket.destroy();
  }

  /**
   * Stops accepting and sends GOAWAY to every session: open tunnels finish,
   * no new ones start. After `graceMs`, if given, what is left is closed.
   */
  async close(graceMs?: number): Promise<void> {
    this.#closed = true;
    this.#unsubscribe?.();
    if (this.#sessions.size === 0) return;
    const drained = new Promise<void>((resolve) => { this.#drained = resolve; });
    this.#each(true);
    if (graceMs === undefined) {
      await drained;
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const late = await Promise.race([drained.then(() => false), new Promise<boolean>((resolve) => { timer = setTimeout(() => { resolve(true); }, graceMs); })]);
    clearTimeout(timer);
    if (!late) return;
    this.destroy();
    // Their ends come back as events; bounded, should the engine be gone.
    await Promise.race([drained, new Promise<void>((resolve) => { setTimeout(resolve, 2_000).unref(); })]);
  }

  /** Closes every session abruptly. */
  destroy(): void {
    this.#closed = true;
    this.#unsubscribe?.();
    this.#each(false);
  }

  #each(graceful: boolean): void {
    for (const id of this.#sessions.keys()) {
      try {
        this.#port.engine.closeSession({ session: id, graceful });
      } catch {
        // The engine is closed: its sessions are gone with it.
        this.#forget(id);
      }
    }
  }

  #forget(id: number): void {
    const s = this.#sessions.get(id);
    this.#sessions.delete(id);
    this.#port.forget(id);
    // Tunnels the engine never reported ended (it was closed under them).
    if (s !== undefined) {
      s.gone();
      for (const t of s.tunnels.values()) this.#ended(t, { bytesIn: 0, bytesOut: 0, error: 'the HBONE connection ended' });
      s.tunnels.clear();
    }
    if (this.#sessions.size === 0) this.#drained?.();
  }

  #ended(t: Tunnel, end: CarriedEnd): void {
    if (t.end !== undefined) return;
    t.end = end;
    if (t.open) this.#activeTunnels--;
    t.controller?.abort(TUNNEL_ENDED);
    this.#dialed(t, { status: 503, reason: 'the client went away' });
    for (const fn of t.listeners.splice(0)) {
      try {
        fn(end);
      } catch (err) {
        if (t.request !== undefined) this.#opts.onStreamError?.(err, { peer: t.request.peer, peerAddress: t.request.peerAddress, localAddress: t.request.localAddress });
      }
    }
  }

  #onEvent(id: number, s: Session, ev: HboneEngineEvent): void {
    switch (ev.kind) {
      case 'session':
        try {
          s.peer = parseSpiffe(ev.fields[0] ?? '');
        } catch {
          // The engine checked it; a parse failure cannot be: fail closed anyway.
          s.peer = undefined;
        }
        return;
      case 'reject': {
        this.#forget(id);
        const code = ev.message.startsWith('the client identity') || ev.message.includes('SPIFFE') ? HboneErrorCode.IDENTITY
          : ev.message.includes('ALPN') ? HboneErrorCode.ALPN : HboneErrorCode.TLS;
        this.#opts.onHandshakeReject?.({ error: new HboneError(code, 'TLS_FAILURE', ev.message), peerAddress: s.peerAddress });
        return;
      }
      case 'session-end':
        this.#forget(id);
        return;
      case 'request':
        this.#serve(id, s, ev.stream, ev.fields).catch((err: unknown) => { this.#failed(id, s, ev.stream, err); });
        return;
      case 'dial': {
        const t = s.tunnels.get(ev.stream);
        if (t === undefined) return;
        if (ev.status === 200) {
          t.open = true;
          t.openedAt = Date.now();
          this.#activeTunnels++;
          this.#dialed(t, undefined);
          return;
        }
        // The engine answered the client; no close event follows.
        t.answered = true;
        this.#dialed(t, { status: ev.status === 401 ? 401 : 503, reason: ev.message });
        return;
      }
      case 'close': {
        const t = s.tunnels.get(ev.stream);
        if (t === undefined) return;
        s.tunnels.delete(ev.stream);
        const wasOpen = t.open;
        this.#ended(t, { bytesIn: ev.recv, bytesOut: ev.sent, error: ev.message === '' ? undefined : ev.message });
        if (wasOpen && t.request !== undefined && s.peer !== undefined) {
          this.#opts.onTunnelEnd?.({
            request: t.request, peer: s.peer, authority: t.request.authority, bytesIn: ev.recv, bytesOut: ev.sent,
            durationMs: Date.now() - t.openedAt, reason: ev.message === '' ? 'closed' : ev.message,
          });
        }
        return;
      }
      default:
        return;
    }
  }

  /** A throw in our handling (a bug): this stream alone is closed and reported; the session goes on. */
  #failed(id: number, s: Session, stream: number, err: unknown): void {
    const t = s.tunnels.get(stream);
    try {
      if (t?.open === true) this.#port.engine.closeTunnel({ session: id, stream, reason: 'internal error' });
      else if (t !== undefined && t.end === undefined) this.#port.engine.answer({ session: id, stream, status: 503 });
    } catch {
      // The engine is closed.
    }
    if (s.peer !== undefined) this.#opts.onStreamError?.(err, { peer: s.peer, peerAddress: s.peerAddress, localAddress: s.localAddress });
  }

  #dialed(t: Tunnel, failure: DialFailure | undefined): void {
    const done = t.dialing;
    t.dialing = undefined;
    done?.(failure);
  }

  #carrier(id: number, stream: number, t: Tunnel): TunnelCarrier {
    return {
      close: (reason) => {
        if (t.end !== undefined) return;
        if (!t.open) {
          t.revoked ??= reason;
          // Still connecting: the engine answers 401 and its dial event says so.
          if (t.dialing === undefined) return;
        }
        try {
          this.#port.engine.closeTunnel({ session: id, stream, reason });
        } catch {
          // The engine is closed: the tunnel with it.
        }
      },
      onEnd: (fn) => {
        if (t.end !== undefined) fn(t.end);
        else t.listeners.push(fn);
      },
      dial: (to) => new Promise((resolve) => {
        if (t.end !== undefined) resolve({ status: 503, reason: 'the client went away' });
        else if (t.revoked !== undefined) resolve({ status: 401, reason: t.revoked });
        else if (t.dialing !== undefined || t.open) resolve({ status: 503, reason: 'the upstream is dialled already' });
        else {
          t.dialing = resolve;
          this.#port.engine.answer({ session: id, stream, status: 200, dial: to });
        }
      }),
    };
  }

  async #serve(id: number, s: Session, stream: number, fields: readonly string[]): Promise<void> {
    const t: Tunnel = {
      controller: undefined, request: undefined, open: false, openedAt: 0, revoked: undefined, listeners: [], end: undefined, dialing: undefined, answered: false,
    };
    s.tunnels.set(stream, t);
    const peer = s.peer;
    const headers = headersOf(fields);
    const reject = (status: 400 | 401 | 503, reason: string): void => {
      // An error answer ends the stream in the engine without a close event.
      s.tunnels.delete(stream);
      if (!t.answered) this.#port.engine.answer({ session: id, stream, status });
      if (peer !== undefined) {
        this.#opts.onReject?.({ status, reason, authority: fields[1] === '' ? undefined : fields[1], peer, peerAddress: s.peerAddress, localAddress: s.localAddress });
      }
    };
    if (peer === undefined) {
      reject(401, 'no verified client identity');
      return;
    }
    // The JavaScript server's checks, in its order (server.ts, reference §5.6).
    if (headers[':method'] !== 'CONNECT') {
      reject(400, `method ${String(headers[':method'])} is not CONNECT`);
      return;
    }
    const authority = parseAuthority(fields[1]);
    if (authority === undefined) {
      reject(400, `cannot parse authority ${JSON.stringify(fields[1] ?? '')}`);
      return;
    }
    const request = new EngineRequest(t, peer, s, authority, headers, this.#carrier(id, stream, t));
    t.request = request;
    let decision: ConnectDecision;
    try {
      decision = await this.#opts.handler(request);
    } catch (err) {
      decision = { status: 503, reason: `handler failed: ${(err as Error).message}` };
    }
    if (decision.status !== 200) {
      if (t.end === undefined) reject(decision.status, decision.reason);
      return;
    }
    // The engine connected the upstream and answered (the dial event).
    if (!('upstream' in decision)) return;
    const upstream = decision.upstream;
    // A 200 that never becomes a tunnel still ends, for whoever counts it.
    const drop = (error: string): void => {
      upstream.destroy();
      this.#ended(t, { bytesIn: 0, bytesOut: 0, error });
    };
    // Only a socket's fd can go to the engine.
    if (!(upstream instanceof Socket)) {
      drop('the upstream is not a socket');
      reject(503, 'the upstream is not a socket');
      return;
    }
    let fd: number;
    try {
      fd = fdOf(upstream);
    } catch {
      drop('the upstream socket has no fd');
      reject(503, 'the upstream socket has no fd');
      return;
    }
    // What the handler wrote (a PROXY header to a waypoint's app tunnel) must
    // be on the wire before Node's copy of the socket is closed: an empty
    // write completes after every write before it.
    if (upstream.writableLength > 0) {
      await new Promise<void>((resolve) => { upstream.write(Buffer.alloc(0), () => { resolve(); }); });
    }
    if (t.end !== undefined) {
      // The client went away meanwhile (its close event came).
      drop('the client went away');
      return;
    }
    if (t.revoked !== undefined) {
      drop(t.revoked);
      reject(401, t.revoked);
      return;
    }
    // From here the engine is the upstream's only reader.
    (upstream as unknown as { _handle?: { readStop?: () => void } })._handle?.readStop?.();
    const initial = drainReadable(upstream);
    t.open = true;
    t.openedAt = Date.now();
    this.#activeTunnels++;
    this.#port.engine.answer({
      session: id, stream, status: 200, fd,
      ...(decision.baggage === undefined ? {} : { baggage: decision.baggage }),
      ...(initial === undefined ? {} : { initial }),
    });
    upstream.destroy();
  }
}
