// SPDX-License-Identifier: Apache-2.0
// istio_tcp_* with ztunnel's label set (reference §8.1; ztunnel
// src/proxy/metrics.rs CommonTrafficLabels), so Kiali and the Istio
// dashboards read Skein's connections like ztunnel's. Missing values are
// "unknown", as in ztunnel (DefaultedUnknown): an empty canonical revision is
// "unknown", never "latest".
import { carriedUntil } from './carried.ts';
import type net from 'node:net';
import { Counter, Gauge, type Registry } from 'prom-client';
import { identityOf, type Workload } from '../state/workload.ts';
import { spiffeUri, type Identity } from '../identity/spiffe.ts';
import type { IdleSeries } from '../metrics/idle-series.ts';
import type { Service } from '../state/service.ts';

export const TCP_LABELS = [
  'reporter',
  'source_workload', 'source_canonical_service', 'source_canonical_revision', 'source_workload_namespace',
  'source_principal', 'source_app', 'source_version', 'source_cluster',
  'destination_service', 'destination_service_namespace', 'destination_service_name',
  'destination_workload', 'destination_canonical_service', 'destination_canonical_revision', 'destination_workload_namespace',
  'destination_principal', 'destination_app', 'destination_version', 'destination_cluster',
  'request_protocol', 'response_flags', 'connection_security_policy',
  // ztunnel's LocalityLabels, flattened after the others (from Workload.locality).
  'source_region', 'source_zone', 'destination_region', 'destination_zone',
] as const;

export type TcpLabels = Readonly<Record<(typeof TCP_LABELS)[number], string>>;

export type ResponseFlag = '-' | 'DENY' | 'CONNECT' | 'TLS_FAILURE' | 'H2_HANDSHAKE_FAILURE' | 'NETWORK_POLICY' | 'IDENTITY_ERROR';

export interface ConnectionFacts {
  reporter: 'source' | 'destination';
  source: Workload | undefined;
  /** The mTLS peer identity (destination reporter), or the source's own (source reporter). */
  sourceIdentity: Identity | undefined;
  destination: Workload | undefined;
  destinationService: Service | undefined;
  mtls: boolean;
  flag: ResponseFlag;
}

const unknown = (v: string | undefined): string => (v === undefined || v === '' ? 'unknown' : v);

// One labels object per set of facts, kept while its workloads and service
// live (they are replaced, never changed, on an update): a connection then
// costs lookups, not 27 fields and a 500-character key. Keyed by object
// identity, level by level; NONE stands for a missing one.
const NONE = {};
type Level<T> = WeakMap<object, T>;
const interned: Level<Level<Level<Map<string, TcpLabels>>>> = new WeakMap();
// Per workloads and service, one entry per reporter × flag × mTLS × peer
// identity; identities a store does not know could be many, so bounded.
const MAX_PER_SET = 64;

function level<T>(m: Level<T>, k: object | undefined, make: () => T): T {
  const key = k ?? NONE;
  let v = m.get(key);
  if (v === undefined) {
    v = make();
    m.set(key, v);
  }
  return v;
}

/** ztunnel's labels for a connection's facts; the same (frozen) object for the same facts. */
export function tcpLabels(f: ConnectionFacts): TcpLabels {
  const bySource = level(interned, f.source, () => new WeakMap());
  const byDestination = level(bySource, f.destination, () => new WeakMap());
  const sets = level(byDestination, f.destinationService, () => new Map<string, TcpLabels>());
  const principal = f.sourceIdentity === undefined ? 'unknown' : spiffeUri(f.sourceIdentity);
  const key = `${f.reporter}|${f.flag}|${f.mtls ? 1 : 0}|${principal}`;
  let l = sets.get(key);
  if (l === undefined) {
    if (sets.size >= MAX_PER_SET) sets.clear();
    l = Object.freeze(buildTcpLabels(f, principal));
    sets.set(key, l);
  }
  return l;
}

function buildTcpLabels(f: ConnectionFacts, principal: string): TcpLabels {
  const s = f.source;
  const d = f.destination;
  const svc = f.destinationService;
  const sName = s?.canonicalName || s?.workloadName || s?.name;
  const dName = d?.canonicalName || d?.workloadName || d?.name;
  return {
    reporter: f.reporter,
    source_workload: unknown(s?.workloadName || s?.name),
    source_canonical_service: unknown(sName),
    source_canonical_revision: unknown(s?.canonicalRevision),
    source_workload_namespace: unknown(s?.namespace),
    source_principal: principal,
    source_app: unknown(sName),
    source_version: unknown(s?.canonicalRevision),
    source_cluster: unknown(s?.clusterId),
    destination_service: unknown(svc?.hostname),
    destination_service_namespace: unknown(svc?.namespace),
    destination_service_name: unknown(svc?.name),
    destination_workload: unknown(d?.workloadName || d?.name),
    destination_canonical_service: unknown(dName),
    destination_canonical_revision: unknown(d?.canonicalRevision),
    destination_workload_namespace: unknown(d?.namespace),
    destination_principal: d === undefined ? 'unknown' : spiffeUri(identityOf(d)),
    destination_app: unknown(dName),
    destination_version: unknown(d?.canonicalRevision),
    destination_cluster: unknown(d?.clusterId),
    request_protocol: 'tcp',
    response_flags: f.flag,
    connection_security_policy: f.mtls ? 'mutual_tls' : 'unknown',
    source_region: unknown(s?.locality.region),
    source_zone: unknown(s?.locality.zone),
    destination_region: unknown(d?.locality.region),
    destination_zone: unknown(d?.locality.zone),
  };
}

/**
 * The service an inbound connection is labelled with when the client dialled
 * the pod IP (ztunnel's guess_inbound_service, proxy.rs): the one the client
 * named in `Forwarded: host=`, if it is one of the pod's services; else the
 * first of the pod's services with a port whose target port (directly, or
 * through the endpoint's named-port mapping) is the port dialled.
 */
export function guessInboundService(services: readonly Service[], destination: Workload, port: number, forHost?: string): Service | undefined {
  if (forHost !== undefined) {
    const named = services.find((s) => s.hostname === forHost);
    if (named !== undefined) return named;
  }
  return services.find((s) => {
    for (const [sport, tport] of s.ports) {
      if (tport === port) return true;
      if (s.endpoints.get(destination.uid)?.port[sport] === port) return true;
    }
    return false;
  });
}

/**
 * How many eviction intervals a label set with connections still open may
 * go with nothing counted before it goes anyway (a day at the default hour):
 * past that its open count is more likely stuck than real.
 */
export const OPEN_KEEPS = 24;

/** One label set: what it gathered since the last scrape, and whether it is still in use. */
interface Series {
  labels: TcpLabels;
  opened: number;
  closed: number;
  failed: number;
  received: number;
  sent: number;
  /** Has counts the next scrape has not taken yet (it is in the dirty list). */
  dirty: boolean;
  /** Connections opened under these labels and not yet closed. */
  open: number;
  /** When something last happened to it (the IdleSeries clock). */
  at: number;
  /** Dropped by eviction (#evict then takes it out of the dirty list). */
  gone: boolean;
}


/**
 * Counts per label set and hands the sums to prom-client when it collects.
 * prom-client checks and hashes all 23 labels on every `inc`, four times
 * per connection; under connection churn through the kernel fast path that
 * was a third of the daemon's CPU. Here a connection costs one key (the
 * values joined) and a map lookup, and a scrape one `inc` per label set.
 */
export class TcpMetrics {
  readonly #opened: Counter<(typeof TCP_LABELS)[number]>;
  readonly #closed: Counter<(typeof TCP_LABELS)[number]>;
  readonly #failed: Counter<(typeof TCP_LABELS)[number]>;
  readonly #sent: Counter<(typeof TCP_LABELS)[number]>;
  readonly #received: Counter<(typeof TCP_LABELS)[number]>;
  readonly #series = new Map<string, Series>();
  #dirty: Series[] = [];
  readonly #keys = new WeakMap<TcpLabels, string>();
  readonly #sockets: Gauge<'reporter'>;
  readonly #idle: IdleSeries | undefined;

  /**
   * `idle` (SKEIN_STATS_EVICTION_INTERVAL) drops a label set's series once
   * no connection under it is open and nothing has happened to it for the
   * interval; with connections open, after OPEN_KEEPS intervals. Workload
   * names and revisions change as pods come and go, and series kept for
   * every one that ever was grow without bound (ztunnel's do:
   * istio/ztunnel#1719).
   */
  constructor(registry: Registry, idle?: IdleSeries) {
    const registers = [registry];
    const labelNames = TCP_LABELS;
    // Each counter's collect flushes all five: the first one a scrape reads does the work.
    const collect = (): void => { this.#flush(); };
    this.#opened = new Counter({ name: 'istio_tcp_connections_opened_total', help: 'The total number of TCP connections opened', labelNames, registers, collect });
    this.#closed = new Counter({ name: 'istio_tcp_connections_closed_total', help: 'The total number of TCP connections closed', labelNames, registers, collect });
    this.#failed = new Counter({ name: 'istio_tcp_connections_failed_total', help: 'The total number of TCP connections that failed to establish (unstable)', labelNames, registers, collect });
    this.#sent = new Counter({ name: 'istio_tcp_sent_bytes_total', help: 'The size of total bytes sent during response in case of a TCP connection', labelNames, registers, collect });
    this.#received = new Counter({ name: 'istio_tcp_received_bytes_total', help: 'The size of total bytes received during request in case of a TCP connection', labelNames, registers, collect });
    // Downstream sockets a pod's listeners accepted and still hold (ztunnel: tcp_sockets_open{reporter}).
    this.#sockets = new Gauge({ name: 'istio_tcp_sockets_open', help: 'The current number of open TCP sockets (unstable)', labelNames: ['reporter'], registers });
    this.#sockets.set({ reporter: 'source' }, 0);
    this.#sockets.set({ reporter: 'destination' }, 0);
    if (idle?.evicting === true) {
      this.#idle = idle;
      idle.sweep((now, evictAfterMs) => this.#evict(now, evictAfterMs));
    }
  }

  /** Label sets with series (or counts waiting for a scrape). */
  get seriesCount(): number {
    return this.#series.size;
  }

  /**
   * The sweep (IdleSeries): drops the series of label sets idle for the
   * interval with no connection open, and says how many went. A set that
   * comes back later starts again from zero, which Prometheus reads as a
   * counter reset.
   */
  #evict(now: number, evictAfterMs: number): number {
    const before = now - evictAfterMs;
    // An open count can stick: a kernel flow's close lost from the ring
    // buffer, or labelled from state that changed since its open. So open
    // connections keep a label set for OPEN_KEEPS intervals at most.
    const staleBefore = now - evictAfterMs * OPEN_KEEPS;
    let n = 0;
    let dirtyGone = false;
    for (const [key, s] of this.#series) {
      if (s.at > before || (s.open > 0 && s.at > staleBefore)) continue;
      this.#series.delete(key);
      s.gone = true;
      dirtyGone ||= s.dirty;
      for (const c of [this.#opened, this.#closed, this.#failed, this.#sent, this.#received]) c.remove(s.labels);
      n++;
    }
    // Its counts go with it (and where nothing scrapes, the list would keep it).
    if (dirtyGone) this.#dirty = this.#dirty.filter((s) => !s.gone);
    return n;
  }

  /**
   * Counts `socket` as open until it closes: outbound listener sockets as
   * source, inbound ones as destination. A connection the native engine
   * accepted (Node holds no socket for it) counts until `until` settles.
   */
  socketOpened(reporter: 'source' | 'destination', socket: net.Socket | { until: Promise<void> }): void {
    this.#sockets.inc({ reporter });
    const dec = (): void => { this.#sockets.dec({ reporter }); };
    if ('until' in socket) {
      socket.until.then(dec, dec);
      return;
    }
    // Handed to the native engine, the connection outlives Node's copy of the socket.
    socket.once('close', () => {
      const until = carriedUntil(socket);
      if (until === undefined) dec();
      else until.then(dec, dec);
    });
  }

  opened(l: TcpLabels): void {
    const s = this.#tally(l);
    s.opened++;
    s.open++;
  }

  /**
   * `received`: request bytes (client → server); `sent`: response bytes.
   * A connection that ended in an error also counts as failed, as ztunnel's
   * ConnectionResult does when its result is an error.
   */
  closed(l: TcpLabels, received: number, sent: number, error?: unknown): void {
    const t = this.#tally(l);
    t.closed++;
    // Never below 0: a kernel flow opened under the daemon before a restart closes under this one.
    if (t.open > 0) t.open--;
    if (error !== undefined && error !== null) t.failed++;
    if (received > 0) t.received += received;
    if (sent > 0) t.sent += sent;
  }

  failed(l: TcpLabels): void {
    this.#tally(l).failed++;
  }

  #tally(l: TcpLabels): Series {
    // TcpLabels are built with one key order (tcpLabels), so the values alone
    // identify the set; tcpLabels gives one object per set, so its key is
    // made once.
    let key = this.#keys.get(l);
    if (key === undefined) {
      key = Object.values(l).join('\u0000');
      this.#keys.set(l, key);
    }
    let t = this.#series.get(key);
    if (t === undefined) {
      t = { labels: l, opened: 0, closed: 0, failed: 0, received: 0, sent: 0, dirty: false, open: 0, at: 0, gone: false };
      this.#series.set(key, t);
    }
    if (!t.dirty) {
      t.dirty = true;
      this.#dirty.push(t);
    }
    if (this.#idle !== undefined) t.at = this.#idle.now();
    return t;
  }

  #flush(): void {
    for (const t of this.#dirty) {
      t.dirty = false;
      // A series appears once something happened to it, as with direct incs.
      if (t.opened > 0) this.#opened.inc(t.labels, t.opened);
      if (t.closed > 0) this.#closed.inc(t.labels, t.closed);
      if (t.failed > 0) this.#failed.inc(t.labels, t.failed);
      if (t.received > 0) this.#received.inc(t.labels, t.received);
      if (t.sent > 0) this.#sent.inc(t.labels, t.sent);
      t.opened = t.closed = t.failed = t.received = t.sent = 0;
    }
    this.#dirty = [];
  }
}
