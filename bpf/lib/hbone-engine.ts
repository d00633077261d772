// SPDX-License-Identifier: Apache-2.0
// The native HBONE engine (bpf/src/hbone, its own addon skein_hbone.node):
// loaded when it was built, else `undefined` with the reason, so the daemon
// can fall back to its JavaScript HBONE path. Design: docs/native-engine.md.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { TcpKeepalive } from './sockets.ts';

export interface HboneEngineOptions {
  /** Worker threads, each one epoll loop (ZTUNNEL_WORKER_THREADS). Default 2. */
  workers?: number;
  /** Streams per pooled connection; the peer's MAX_CONCURRENT_STREAMS wins when lower. Default 100. */
  maxStreams?: number;
  /** A pooled connection without streams for this long is closed. Default 5 min. */
  idleTimeoutMs?: number;
  /** TCP + TLS + SETTINGS within this. Default 10 s. */
  connectTimeoutMs?: number;
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
  /**
   * Streams a pooled connection opens in its life; then it leaves the pool,
   * and closes (GOAWAY) once its last stream has ended. Default 2^30, every
   * client stream id HTTP/2 has: a connection that ran out would refuse
   * every later tunnel.
   */
  streamsPerConnection?: number;
  /**
   * TLS records a connection sends under one key before a KeyUpdate.
   * Default 2^23, under AES-GCM's limit of 2^24.5 (RFC 8446, 5.5).
   */
  keyUpdateRecords?: number;
  /**
   * Carry outbound tunnels on the kernel module (kmod/) over kTLS, one
   * connection per tunnel, bytes paired with splice(). Set only when the
   * probe found the module and kTLS (accel/kmod.ts); a socket that will not
   * take them goes the pooled userspace way.
   */
  kmod?: boolean;
  /**
   * The TLS key exchange groups every credential offers and accepts, as an
   * OpenSSL group list ("X25519MLKEM768" under COMPLIANCE_POLICY=pqc).
   * Default: OpenSSL's. A list this OpenSSL refuses throws here.
   */
  groups?: string;
}

/**
 * One connection's news. `open`: the peer answered 200 and bytes flow.
 * `fail`: it never opened (`status` the peer's answer when it gave one,
 * `flag` ztunnel's response flag). `close`: both ways done or broken; `sent`
 * pod → peer, `recv` peer → pod, `message` "" or the first error.
 */
export interface HboneEngineEvent {
  /** Outbound: the request's id; inbound: 0. */
  id: number;
  /**
   * Inbound kinds: `session` (handshake done, fields[0] the client's SPIFFE
   * URI), `reject` (handshake or identity check failed), `request` (fields:
   * method, authority, then header name, value, …), `session-end`, `dial`
   * (an answer's dial ended: `status` 200 and the tunnel is open, or the
   * status the client was answered and `message` why); and `close` with
   * `session` and `stream` set. `accept`: a connection on a listener
   * (`session` its id) waits, parked as `id`, for outbound({ accepted }) or
   * release(); fields: source ip, port, original destination ip, port (the
   * last two "" when it has none, `message` why). `listener-closed`: after
   * unlisten (or the engine's stop), when no `accept` of it will follow.
   */
  kind: 'open' | 'fail' | 'close' | 'session' | 'reject' | 'request' | 'session-end' | 'dial' | 'accept' | 'listener-closed';
  status: number;
  flag: 'CONNECT' | 'TLS_FAILURE' | 'H2_HANDSHAKE_FAILURE' | '-';
  sent: number;
  recv: number;
  message: string;
  /** Inbound: the caller's session id. */
  session: number;
  /** Inbound: the HTTP/2 stream id. */
  stream: number;
  fields: readonly string[];
}

export interface HboneInboundRequest {
  /** The caller's id for this connection, echoed in its events. */
  session: number;
  /** The accepted 15008 socket; the engine takes a dup. */
  fd: number;
  credential: number;
  /** A client needs a SPIFFE URI SAN in this trust domain. */
  trustDomain: string;
}

export interface HboneAnswer {
  session: number;
  stream: number;
  /** 200 with `fd` or `dial`, or an error status (400, 401, 503). */
  status: number;
  /** The upstream socket for a 200; the engine takes a dup. */
  fd?: number;
  /** Instead of `fd`: the upstream for the engine to connect; the 200 waits for it (a `dial` event). */
  dial?: HboneDial;
  baggage?: string;
  /** What Node had read from the upstream; sent to the client first. */
  initial?: Buffer;
}

/** An upstream the engine connects for an answer, as TypeScript decided it. */
export interface HboneDial {
  address: string;
  port: number;
  /** Bound first, with IP_TRANSPARENT: the client's own address. */
  localAddress?: string;
  /** The pod's netns, where the socket is made. */
  netns?: number;
  mark?: number;
  keepalive?: TcpKeepalive;
  /** Written to the upstream before any client byte (a PROXY v2 header). */
  header?: Buffer;
}

export interface HboneTunnelClose {
  session: number;
  stream: number;
  /** The tunnel's close event carries it as its error. */
  reason: string;
}

export interface HboneSessionClose {
  session: number;
  /** GOAWAY: tunnels open finish, no new ones; else closed now with every tunnel. */
  graceful: boolean;
}

export interface HboneOutboundRequest {
  /** The caller's id, echoed in every event of this connection. */
  id: number;
  /** The pod's socket; the engine takes a dup, the caller closes its own. */
  fd?: number;
  /** Instead of `fd`: a connection the engine accepted (its `accept` event's id). */
  accepted?: number;
  /** From addCredential. */
  credential: number;
  poolKey: string;
  /** SPIFFE URIs; the server leaf must carry one of them. */
  expected: readonly string[];
  upstream: { ip: string; port: number };
  /** Where the upstream socket is made (the engine dups it); -1 or absent: here. */
  netns?: number;
  mark?: number;
  /** TCP keepalive on the upstream socket (KEEPALIVE_*), as connectTcp's. */
  keepalive?: TcpKeepalive;
  authority: string;
  /** Flat [name, value, name, value, …]; lower-case names. */
  headers?: readonly string[];
  /** What Node had already read from the pod socket; sent first. */
  initial?: Buffer;
}

export interface HboneEngineStats {
  workers: number;
  sessionsOpened: number;
  sessionsLive: number;
  /** KeyUpdates the engine's connections sent. */
  keyUpdates: number;
  streamsLive: number;
  bytesSent: number;
  bytesRecv: number;
  credentials: number;
  /** Tunnels handed to the kernel module. */
  kmodTunnels: number;
  /** Frames the module gave back to userspace (ENOMSG) on those tunnels. */
  kmodFallbacks: number;
  /** Tunnels the module's socket would not take (sent the userspace way). */
  kmodDeclined: number;
  /** DATA payload the module carried, pod → peer and peer → pod (its own counters). */
  kmodTxBytes: number;
  kmodRxBytes: number;
  /** Peer chains a CRL revoked (setCrls): servers the engine's clients refused, clients its servers refused. */
  crlRejectionsSource: number;
  crlRejectionsDestination: number;
}

export interface HboneEngine {
  addCredential(chainPem: string, keyPem: string, rootsPem: string): number;
  removeCredential(id: number): void;
  /**
   * The CRLs (DER) peer chains are checked against at each handshake, and
   * open sessions re-checked now (those revoked close); `[]` stops the
   * checks. Throws ERR_HBONE_CRL when one does not parse.
   */
  setCrls(ders: readonly Buffer[]): void;
  outbound(req: HboneOutboundRequest): void;
  inbound(req: HboneInboundRequest): void;
  answer(a: HboneAnswer): void;
  /** Resets an inbound tunnel (a policy change revoked it). */
  closeTunnel(c: HboneTunnelClose): void;
  /** Ends an outbound tunnel now (its pod left the mesh): its close (or fail) event carries the reason. */
  closeOutbound(c: { id: number; reason: string }): void;
  /** GOAWAY to an inbound session, or closes it now. */
  closeSession(c: HboneSessionClose): void;
  /** Accepts on a listening socket (the engine takes a dup): an `accept` event per connection. */
  listen(l: { listener: number; fd: number }): void;
  /**
   * Stops accepting on it at once (what the kernel still queues goes to
   * another listener of the port, tcp_migrate_req); connections still
   * parked stay so. A `listener-closed` event follows the last `accept`.
   */
  unlisten(l: { listener: number }): void;
  /** A parked connection's fd, now the caller's; throws ERR_HBONE_ACCEPTED when there is none by that id. */
  release(accepted: number): number;
  stats(): HboneEngineStats;
  /** Stops the workers; every open connection reports its end first. */
  close(): void;
}

interface HboneAddon {
  /** Events come flat: EVENT_SLOTS values each (binding.cc EventsArray). */
  HboneEngine: new (opts: HboneEngineOptions, onEvents: (flat: unknown[]) => void) => HboneEngine;
}

/** By the engine's EventKind numbers (engine.h). */
const KINDS = [undefined, 'open', 'fail', 'close', 'session', 'reject', 'request', 'session-end', 'dial', 'accept', 'listener-closed'] as const;
const EVENT_SLOTS = 10;
const NO_FIELDS: readonly string[] = Object.freeze([]);

/** The engine's flat event array as event objects. */
export function decodeEvents(flat: unknown[]): HboneEngineEvent[] {
  const out: HboneEngineEvent[] = new Array<HboneEngineEvent>(flat.length / EVENT_SLOTS);
  for (let i = 0, k = 0; k < flat.length; i++, k += EVENT_SLOTS) {
    const kind = KINDS[flat[k + 1] as number];
    if (kind === undefined) throw new Error(`the HBONE engine sent an unknown event kind ${String(flat[k + 1])}`);
    out[i] = {
      id: flat[k] as number, kind, status: flat[k + 2] as number, flag: flat[k + 3] as HboneEngineEvent['flag'],
      sent: flat[k + 4] as number, recv: flat[k + 5] as number, message: flat[k + 6] as string,
      session: flat[k + 7] as number, stream: flat[k + 8] as number, fields: (flat[k + 9] as string[] | undefined) ?? NO_FIELDS,
    };
  }
  return out;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const candidates = [
  path.join(here, '..', 'build', 'Release', 'skein_hbone.node'),
  path.join(here, '..', 'build', 'Debug', 'skein_hbone.node'),
];

type Loaded = { addon: HboneAddon; reason?: undefined } | { addon?: undefined; reason: string };

function load(): Loaded {
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  for (const file of candidates) {
    try {
      return { addon: require(file) as HboneAddon };
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code !== 'MODULE_NOT_FOUND') return { reason: `${file} does not load: ${e.message}` };
      tried.push(file);
    }
  }
  return { reason: `the native HBONE engine is not built (tried ${tried.join(', ')})` };
}

let loaded: Loaded | undefined;

/** Why the engine is unavailable, or undefined when it is available. */
export function hboneEngineUnavailable(): string | undefined {
  loaded ??= load();
  return loaded.reason;
}

/** A new engine; throws when the addon is unavailable (check hboneEngineUnavailable first). */
export function createHboneEngine(opts: HboneEngineOptions, onEvents: (events: HboneEngineEvent[]) => void): HboneEngine {
  loaded ??= load();
  if (loaded.addon === undefined) throw new Error(loaded.reason);
  return new loaded.addon.HboneEngine(opts, (flat) => { onEvents(decodeEvents(flat)); });
}
