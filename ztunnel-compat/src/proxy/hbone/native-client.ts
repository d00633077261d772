// SPDX-License-Identifier: Apache-2.0
// The HBONE client on the native engine (bpf/src/hbone): the same request as
// HboneClient's (decided in TypeScript), but the pod socket itself goes to the
// engine, which makes the pooled mTLS + HTTP/2 connection and relays the bytes
// on its own threads. TypeScript hears back once when the tunnel opens (or
// fails) and once when it ends; nothing per packet. docs/native-engine.md.
import type net from 'node:net';
import { closeFd, createHboneEngine, fdOf } from '@skein/bpf';
import type { HboneEngine, HboneEngineEvent, HboneEngineOptions, HboneEngineStats, TcpKeepalive } from '@skein/bpf';
import type { WorkloadCertificate } from '../../identity/certificate.ts';
import { spiffeUri } from '../../identity/spiffe.ts';
import { markCarried } from '../carried.ts';
import { consumeReads } from '../pooled-reads.ts';
import { defaultPoolKey } from './client.ts';
import type { TunnelRequest } from './client.ts';
import { HboneError, HboneErrorCode } from './error.ts';
import { ChurnTable } from '../churn-table.ts';
import type { HboneFlag } from './error.ts';

/** HboneClient's request, less what only a Node socket can do; plus where to make the upstream socket. */
export interface NativeTunnelRequest extends Omit<TunnelRequest, 'createSocket' | 'localAddress' | 'headers'> {
  headers?: Readonly<Record<string, string>>;
  /** The pod's netns (its upstream socket is made there); absent: the daemon's own. */
  netnsFd?: number;
  /** SO_MARK for the upstream socket. */
  mark?: number;
  /** TCP keepalive on the upstream socket (KEEPALIVE_*). */
  keepalive?: TcpKeepalive;
}

/** How a tunnel ended: bytes pod → peer, peer → pod, and the first error. */
export interface NativeTunnelEnd {
  sent: number;
  recv: number;
  error: string | undefined;
}

export interface NativeTunnel {
  /** Settles when both directions are done (or broken); never rejects. */
  done: Promise<NativeTunnelEnd>;
}

/** A tunnel handed to the engine, from the hand-over on. */
export interface CarriedTunnel {
  /** Resolves on the peer's 200; rejects with HboneError as HboneClient.open. */
  tunnel: Promise<NativeTunnel>;
  /** Settles when the engine is done with the pod's connection (failed or closed). */
  released: Promise<void>;
  /** Ends the tunnel now (its pod left the mesh); the end carries `reason`. */
  end: (reason: string) => void;
  /** False when it was refused before the hand-over: the pod's connection is still the caller's. */
  taken: boolean;
}

/** A connection the engine accepted on a listener, parked until openAccepted() or release(). */
export interface AcceptedConnection {
  /** The engine's id of the parked connection. */
  id: number;
  srcIp: string;
  srcPort: number;
  /** Where the pod meant to go (SO_ORIGINAL_DST), or why that is unknown. */
  originalDst: { address: string; port: number } | Error;
}

/** What the inbound side (native-server.ts) uses of the client's engine. */
export interface InboundPort {
  engine: HboneEngine;
  credential: (cert: WorkloadCertificate) => number;
  /** A new session id whose events go to `sink`. */
  open: (sink: (ev: HboneEngineEvent) => void) => number;
  forget: (id: number) => void;
}

interface Pending {
  opened: (t: NativeTunnel) => void;
  failed: (e: HboneError) => void;
  ended: ((end: NativeTunnelEnd) => void) | undefined;
  /** The engine is done with the pod socket (failed or closed). */
  gone: () => void;
}

interface Cred {
  cert: WorkloadCertificate;
  id: number;
}

function failure(ev: HboneEngineEvent, authority: string): HboneError {
  const flag: HboneFlag = ev.flag === '-' ? 'CONNECT' : ev.flag;
  if (ev.status !== 0) {
    return new HboneError(HboneErrorCode.STATUS, 'CONNECT', `${authority}: ${ev.message}`, { status: ev.status });
  }
  const code = flag === 'TLS_FAILURE'
    ? (ev.message.startsWith('the server presented') ? HboneErrorCode.IDENTITY : HboneErrorCode.TLS)
    : flag === 'H2_HANDSHAKE_FAILURE' ? HboneErrorCode.H2_HANDSHAKE
      : ev.message.startsWith('cannot connect') ? HboneErrorCode.TCP
        : ev.message.includes('engine is closed') ? HboneErrorCode.CLOSED : HboneErrorCode.STREAM;
  return new HboneError(code, flag, ev.message);
}

export class NativeHboneClient {
  readonly #engine: HboneEngine;
  /**
   * Tunnels handed to the engine until their end, by id (a ChurnTable: one
   * per connection). The table gives the ids, never one still in use: a
   * tunnel may stay open while billions of others come and go.
   */
  readonly #pending = new ChurnTable<Pending & { authority: string }>();
  /** One credential per identity: a newer certificate replaces the older. */
  readonly #creds = new Map<string, Cred>();
  /** Inbound sessions' and listeners' event sinks, by session id (given as the tunnels' are). */
  readonly #sessions = new ChurnTable<(ev: HboneEngineEvent) => void>();
  #closed = false;

  constructor(opts: HboneEngineOptions = {}) {
    this.#engine = createHboneEngine(opts, (events) => { this.#onEvents(events); });
  }

  /**
   * The CRLs (DER) the engine checks peer chains against, at each handshake
   * and now for every open session (CRL_PATH; `[]`: none). Throws when one
   * does not parse.
   */
  setCrls(ders: readonly Buffer[]): void {
    if (!this.#closed) this.#engine.setCrls(ders);
  }

  stats(): HboneEngineStats & { pending: number } {
    return { ...this.#engine.stats(), pending: this.#pending.size };
  }

  /**
   * Hands the pod's socket to the engine with the tunnel's decision. Node's
   * copy of the socket is closed here; what Node had read from it goes first.
   * Resolves on the peer's 200; rejects with HboneError as HboneClient.open.
   * Refused before the hand-over (closed client, expired certificate), the
   * socket is left to the caller, open.
   */
  open(socket: net.Socket, req: NativeTunnelRequest): Promise<NativeTunnel> {
    const refused = this.#refusal(req);
    if (refused !== undefined) return Promise.reject(refused);
    const fd = fdOf(socket);
    // Stop Node reading, then take what it has buffered: from here on the
    // engine is the socket's only reader.
    (socket as unknown as { _handle?: { readStop?: () => void } })._handle?.readStop?.();
    const initial = drainReadable(socket);
    let carried: CarriedTunnel;
    try {
      carried = this.#start({ fd }, req, initial);
    } catch (err) {
      socket.destroy();
      throw err;
    }
    // The engine holds its own dup; Node's is closed without touching the connection.
    markCarried(socket, carried.released, carried.end);
    socket.destroy();
    return carried.tunnel;
  }

  /**
   * As open(), for a connection the engine accepted (listen()): it goes from
   * parked to the tunnel without passing through Node. Refused before the
   * hand-over (closed client, expired certificate) it stays parked, the
   * caller's to release. A throw (no such parked connection, or a request
   * the engine rejects) leaves nothing pending.
   */
  openAccepted(accepted: number, req: NativeTunnelRequest): CarriedTunnel {
    const refused = this.#refusal(req);
    if (refused !== undefined) return { tunnel: Promise.reject(refused), released: Promise.resolve(), end: () => undefined, taken: false };
    return this.#start({ accepted }, req, undefined);
  }

  /**
   * Has the engine accept on a listening socket (it takes a dup; the caller
   * closes its own): each connection is parked and reported to `onAccept`,
   * whose decision is openAccepted() or release(). Until `close()`.
   */
  listen(fd: number, onAccept: (conn: AcceptedConnection) => void): { close: () => void } {
    if (this.#closed) throw new HboneError(HboneErrorCode.CLOSED, 'CONNECT', 'the HBONE engine is closed');
    const listener = this.#sessions.add((ev) => {
      if (ev.kind === 'listener-closed') this.#sessions.delete(listener);
      if (ev.kind !== 'accept') return;
      const [srcIp = '', srcPort = '', dstIp = '', dstPort = ''] = ev.fields;
      onAccept({
        id: ev.id, srcIp, srcPort: Number(srcPort),
        originalDst: dstIp === '' ? new Error(ev.message) : { address: dstIp, port: Number(dstPort) },
      });
    });
    try {
      this.#engine.listen({ listener, fd });
    } catch (err) {
      this.#sessions.delete(listener); // a pod retried every few seconds would leave one each time
      throw err;
    }
    let open = true;
    return {
      // Connections accepted before it go on to onAccept: their events may
      // still be on the way (the sink goes with `listener-closed`).
      close: () => {
        if (!open) return;
        open = false;
        if (this.#closed) this.#sessions.delete(listener);
        else this.#engine.unlisten({ listener });
      },
    };
  }

  /** A parked connection's fd, now the caller's (plain TCP, a refusal); throws when the engine has none by that id. */
  release(accepted: number): number {
    return this.#engine.release(accepted);
  }

  /** Closes a parked connection nobody will decide. */
  #refuse(accepted: number): void {
    try {
      closeFd(this.#engine.release(accepted));
    } catch {
      // The engine stopped, and closed it.
    }
  }

  /** Why a tunnel is refused before anything is handed over, if it is. */
  #refusal(req: NativeTunnelRequest): HboneError | undefined {
    if (this.#closed) return new HboneError(HboneErrorCode.CLOSED, 'CONNECT', 'the HBONE engine is closed');
    // As HboneClient: an expired certificate of our own is never presented.
    if (req.cert.isExpired()) {
      return new HboneError(HboneErrorCode.CERT_EXPIRED, 'CONNECT',
        `the certificate of ${spiffeUri(req.cert.identity)} expired at ${req.cert.notAfter.toISOString()}; it is never presented`);
    }
    return undefined;
  }

  /** Hands the pod's connection (a socket's fd, or a parked one) to the engine with the tunnel's decision. */
  #start(pod: { fd: number } | { accepted: number }, req: NativeTunnelRequest, initial: Buffer | undefined): CarriedTunnel {
    const credential = this.#credential(req.cert);
    const headers: string[] = [];
    for (const [k, v] of Object.entries(req.headers ?? {})) headers.push(k, v);
    let gone: () => void = () => undefined;
    const released = new Promise<void>((resolve) => { gone = resolve; });
    let id = 0;
    const tunnel = new Promise<NativeTunnel>((resolve, reject) => {
      id = this.#pending.add({ opened: resolve, failed: reject, ended: undefined, gone, authority: req.authority });
    });
    try {
      this.#engine.outbound({
        id, ...pod, credential,
        // The serial, as HboneClient: a rotated certificate never rides on a session made with the old one.
        poolKey: `${req.poolKey ?? defaultPoolKey({ ...req, headers: undefined })}|${req.cert.serial}`,
        expected: req.expected.map(spiffeUri),
        upstream: req.upstream,
        netns: req.netnsFd ?? -1,
        mark: req.mark ?? 0,
        ...(req.keepalive === undefined ? {} : { keepalive: req.keepalive }),
        authority: req.authority,
        headers,
        ...(initial === undefined ? {} : { initial }),
      });
    } catch (err) {
      this.#pending.delete(id);
      throw err;
    }
    const end = (reason: string): void => {
      if (!this.#pending.has(id)) return;
      try {
        this.#engine.closeOutbound({ id, reason });
      } catch {
        // The engine is closed: the tunnel with it.
      }
    };
    return { tunnel, released, end, taken: true };
  }

  /** For native-server.ts: the engine, credentials and event routing of inbound sessions. */
  inboundPort(): InboundPort {
    return {
      engine: this.#engine,
      credential: (cert) => this.#credential(cert),
      open: (sink) => this.#sessions.add(sink),
      forget: (id) => { this.#sessions.delete(id); },
    };
  }

  /**
   * The identity (its SPIFFE URI) is no longer needed on this node (the
   * SecretManager forgot it): the engine drops its credential, which would
   * otherwise outlive it for the daemon's life. Sessions made with it keep
   * it until they end; a later tunnel of the identity adds it again.
   */
  forgetIdentity(uri: string): void {
    const have = this.#creds.get(uri);
    if (have === undefined) return;
    this.#creds.delete(uri);
    this.#engine.removeCredential(have.id);
  }

  /** Stops the engine: open tunnels end (their `done` settles with an error). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#engine.close();
  }

  #credential(cert: WorkloadCertificate): number {
    const key = spiffeUri(cert.identity);
    const have = this.#creds.get(key);
    if (have?.cert === cert) return have.id;
    const id = this.#engine.addCredential(cert.chainPems.join(''), cert.keyPem, cert.rootPems.join(''));
    // Sessions made with the old one keep it until they end.
    if (have !== undefined) this.#engine.removeCredential(have.id);
    this.#creds.set(key, { cert, id });
    return id;
  }

  #onEvents(events: HboneEngineEvent[]): void {
    for (const ev of events) {
      if (ev.session !== 0) {
        const sink = this.#sessions.get(ev.session);
        if (sink !== undefined) sink(ev);
        else if (ev.kind === 'accept') this.#refuse(ev.id); // accepted just before its listener closed
        continue;
      }
      const p = this.#pending.get(ev.id);
      if (p === undefined) continue;
      switch (ev.kind) {
        case 'open': {
          const done = new Promise<NativeTunnelEnd>((resolve) => { p.ended = resolve; });
          p.opened({ done });
          break;
        }
        case 'fail':
          this.#pending.delete(ev.id);
          p.gone();
          p.failed(failure(ev, p.authority));
          break;
        case 'close':
          this.#pending.delete(ev.id);
          p.gone();
          p.ended?.({ sent: ev.sent, recv: ev.recv, error: ev.message === '' ? undefined : ev.message });
          break;
      }
    }
  }
}

/**
 * What Node has read from the socket and nobody consumed: the reads a pooled
 * socket holds for its first consumer (pooled-reads.ts; pod sockets are
 * pooled), or a plain socket's readable buffer.
 */
export function drainReadable(socket: net.Socket): Buffer | undefined {
  const parts: Buffer[] = [];
  const pooled = consumeReads(socket, (chunk, release) => {
    parts.push(Buffer.from(chunk));
    release();
    return false; // and read no more: the engine takes over
  });
  // A socket that never read (accepted paused) is left alone: read() would start it reading.
  if (!pooled && socket.readableLength > 0) {
    for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) parts.push(chunk);
  }
  return parts.length === 0 ? undefined : Buffer.concat(parts);
}
