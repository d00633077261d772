// SPDX-License-Identifier: Apache-2.0
// The HBONE server (:15008) on the native engine: HboneServer's contract
// (server.ts), with the TLS and HTTP/2 in the engine. The engine checks the
// client's chain and that it has a SPIFFE SAN in our trust domain (given by
// us), then hands each CONNECT here; the checks and the handler (destination
// validation, authz in decide/, the upstream connect) run in TypeScript as
// for the JavaScript server, and the answer goes back with the upstream's fd.
// One event per session start and end, one per request, one per tunnel end.
import { Socket } from 'node:net';
import type { IncomingHttpHeaders } from 'node:http2';
import { fdOf } from '@skein/bpf';
import type { HboneEngineEvent } from '@skein/bpf';
import type { WorkloadCertificate } from '../../identity/certificate.ts';
import { parseSpiffe } from '../../identity/spiffe.ts';
import type { Identity } from '../../identity/spiffe.ts';
import { HboneError, HboneErrorCode } from './error.ts';
import { parseAuthority } from './h2.ts';
import { drainReadable } from './native-client.ts';
import type { InboundPort, NativeHboneClient } from './native-client.ts';
import type { ConnectRequest, HboneServerOptions, SocketAddress } from './server.ts';

interface Tunnel {
  controller: AbortController;
  request: ConnectRequest | undefined;
  /** Answered 200: its end is a TunnelEnd. */
  open: boolean;
  openedAt: number;
}

interface Session {
  peer: Identity | undefined;
  peerAddress: SocketAddress;
  localAddress: SocketAddress;
  tunnels: Map<number, Tunnel>;
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
  #cert: WorkloadCertificate;
  readonly #sessions = new Map<number, Session>();
  #activeTunnels = 0;
  #closed = false;

  constructor(client: NativeHboneClient, cert: WorkloadCertificate, opts: HboneServerOptions) {
    this.#port = client.inboundPort();
    this.#cert = cert;
    this.#opts = opts;
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  get activeTunnels(): number {
    return this.#activeTunnels;
  }

  /** A rotated certificate: new connections use it. */
  setCertificate(cert: WorkloadCertificate): void {
    this.#cert = cert;
  }

  /** Serves a TCP connection accepted on 15008; Node's copy is closed here. */
  accept(socket: Socket): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    const s: Session = {
      peer: undefined,
      peerAddress: addressOf(socket.remoteAddress, socket.remotePort),
      localAddress: addressOf(socket.localAddress, socket.localPort),
      tunnels: new Map(),
    };
    // As HboneServer: an expired certificate is never served; no handshake.
    if (this.#cert.isExpired()) {
      socket.destroy();
      this.#opts.onCertificateRefused?.({
        reason: 'expired', peerAddress: s.peerAddress,
        error: new HboneError(HboneErrorCode.CERT_EXPIRED, 'TLS_FAILURE', `the certificate expired at ${this.#cert.notAfter.toISOString()}`),
      });
      return;
    }
    const id = this.#port.open((ev) => { this.#onEvent(id, s, ev); });
    this.#sessions.set(id, s);
    try {
      this.#port.engine.inbound({ session: id, fd: fdOf(socket), credential: this.#port.credential(this.#cert), trustDomain: this.#cert.identity.trustDomain });
    } catch (err) {
      this.#forget(id);
      socket.destroy();
      throw err;
    }
    socket.destroy();
  }

  /** New connections are refused; open ones run on until their clients end them. */
  close(): void {
    this.#closed = true;
  }

  #forget(id: number): void {
    this.#sessions.delete(id);
    this.#port.forget(id);
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
        void this.#serve(id, s, ev.stream, ev.fields).catch(() => undefined);
        return;
      case 'close': {
        const t = s.tunnels.get(ev.stream);
        if (t === undefined) return;
        s.tunnels.delete(ev.stream);
        if (!t.open) {
          // Reset (or the session ended) before our answer.
          t.controller.abort();
          return;
        }
        this.#activeTunnels--;
        if (t.request !== undefined && s.peer !== undefined) {
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

  async #serve(id: number, s: Session, stream: number, fields: readonly string[]): Promise<void> {
    const t: Tunnel = { controller: new AbortController(), request: undefined, open: false, openedAt: 0 };
    s.tunnels.set(stream, t);
    const peer = s.peer;
    const headers = headersOf(fields);
    const reject = (status: 400 | 401 | 503, reason: string): void => {
      this.#port.engine.answer({ session: id, stream, status });
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
      reject(400, `bad :authority ${JSON.stringify(fields[1] ?? '')}`);
      return;
    }
    const request: ConnectRequest = { peer, peerAddress: s.peerAddress, localAddress: s.localAddress, authority, headers, signal: t.controller.signal };
    t.request = request;
    let decision;
    try {
      decision = await this.#opts.handler(request);
    } catch (err) {
      decision = { status: 503 as const, reason: `handler failed: ${(err as Error).message}` };
    }
    if (decision.status !== 200) {
      reject(decision.status, decision.reason);
      return;
    }
    // Only a socket's fd can go to the engine.
    if (!(decision.upstream instanceof Socket)) {
      decision.upstream.destroy();
      reject(503, 'the upstream is not a socket');
      return;
    }
    const upstream = decision.upstream;
    let fd: number;
    try {
      fd = fdOf(upstream);
    } catch {
      upstream.destroy();
      reject(503, 'the upstream socket has no fd');
      return;
    }
    // What the handler wrote (a PROXY header to a waypoint's app tunnel) must
    // be on the wire before Node's copy of the socket is closed: an empty
    // write completes after every write before it.
    if (upstream.writableLength > 0) {
      await new Promise<void>((resolve) => { upstream.write(Buffer.alloc(0), () => { resolve(); }); });
    }
    // From here the engine is the upstream's only reader.
    (upstream as unknown as { _handle?: { readStop?: () => void } })._handle?.readStop?.();
    const initial = drainReadable(upstream);
    if (t.controller.signal.aborted) {
      upstream.destroy();
      return;
    }
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
