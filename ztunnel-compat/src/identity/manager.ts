// SPDX-License-Identifier: Apache-2.0
// The SecretManager (ztunnel src/identity/manager.rs): one certificate per
// identity, fetched on demand or ahead of time, shared by every caller,
// rotated at half-life. At most `concurrency` (8) fetches run at once; the
// rest wait in a priority queue (RealTime > Warmup > Background, then oldest
// first). A failed fetch is retried with capped exponential backoff, and a
// certificate that is still valid is kept, and used, until it expires.
// Which identities to hold is driven by the workloads on this node
// (trackWorkload/untrackWorkload), counted per identity.
import { certRetryDelay } from './backoff.ts';
import type { CertificateProvider, CertificateSource, CertsDump, WorkloadCertificate } from './certificate.ts';
import { IdentityError, identityError, IdentityErrorCode } from './error.ts';
import { silentLogger } from './log.ts';
import type { IdentityLogger } from './log.ts';
import { identityKey, sameIdentity, spiffeUri } from './spiffe.ts';
import type { Identity } from './spiffe.ts';

/** Lowest first, as ztunnel's Priority enum. */
export const Priority = Object.freeze({ Background: 0, Warmup: 1, RealTime: 2 } as const);
export type Priority = (typeof Priority)[keyof typeof Priority];

export type CertState = 'Initializing' | 'Available' | 'Unavailable';

export type TimerHandle = unknown;

/** Time seams, for tests: a fake clock drives rotation and backoff without sleeping. */
export interface ManagerTimers {
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

export type SecretManagerEvent =
  | { type: 'fetch-start'; identity: string; priority: Priority }
  | { type: 'fetch-ok'; identity: string; serial: string; refreshAt: Date; notAfter: Date }
  /** `kept`: a still-valid older certificate stays in use. */
  | { type: 'fetch-error'; identity: string; error: IdentityError; retryInMs: number; kept: boolean }
  | { type: 'forget'; identity: string };

export interface SecretManagerStats {
  identities: number;
  inFlight: number;
  queued: number;
  /** Fetches started, succeeded, failed since start. */
  fetches: number;
  successes: number;
  failures: number;
}

/** Where the manager counts its fetches (identity/metrics.ts). */
export interface SecretManagerMetrics {
  /** One finished fetch: `ok`, or the failure's reason (the error code, e.g. `ca_rpc`, `san_mismatch`). */
  fetched(result: string): void;
}

export interface SecretManagerOptions {
  provider: CertificateProvider;
  /** Fetches in flight at once. Default 8. */
  concurrency?: number;
  timers?: ManagerTimers;
  /** In [0, 1): the backoff jitter. Default Math.random. */
  random?: () => number;
  logger?: IdentityLogger;
  onEvent?: (e: SecretManagerEvent) => void;
  metrics?: SecretManagerMetrics;
}

/** `SKEIN_SAN_MISMATCH` -> `san_mismatch`: the metric's reason label. */
export function fetchFailureReason(err: IdentityError): string {
  return err.code.replace(/^SKEIN_/, '').toLowerCase();
}

/**
 * When to renew: at half-life (ztunnel's refresh_at). A certificate already
 * past its half-life when it arrives (back-dated by a minute, as our local CA
 * and many CAs do, with a short SECRET_TTL) would be due at once, again and
 * again: ztunnel would refetch in a loop. It is renewed half way through what
 * is left of it instead.
 */
export function rotationTime(cert: WorkloadCertificate, now: number): Date {
  const at = cert.refreshAt.getTime();
  return at > now ? cert.refreshAt : new Date(now + Math.max(0, cert.notAfter.getTime() - now) / 2);
}

/** setTimeout's limit; longer waits are re-armed when they fire. */
const MAX_TIMER_MS = 2 ** 31 - 1;

const realTimers: ManagerTimers = {
  now: () => Date.now(),
  // Unref'd: a 12 h rotation timer must not keep a finished process alive.
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (h) => { clearTimeout(h as NodeJS.Timeout); },
};

interface Waiter {
  resolve: (cert: WorkloadCertificate) => void;
  reject: (err: IdentityError) => void;
}

interface Entry {
  readonly identity: Identity;
  readonly key: string;
  readonly uri: string;
  state: CertState;
  cert: WorkloadCertificate | undefined;
  /** The last failure, while Unavailable. */
  error: IdentityError | undefined;
  /** Consecutive failures: the backoff exponent. */
  failures: number;
  /** Set while waiting to be fetched; `dueAt` may be in the future (rotation, retry). */
  queued: { priority: Priority; dueAt: number; seq: number } | undefined;
  inFlight: boolean;
  waiters: Waiter[];
}

function asIdentityError(err: unknown, uri: string): IdentityError {
  if (err instanceof IdentityError) return err;
  return identityError(IdentityErrorCode.CA_RPC, `fetching a certificate for ${uri} failed: ${String(err)}`, err);
}

export class SecretManager {
  readonly #provider: CertificateProvider;
  readonly #concurrency: number;
  readonly #timers: ManagerTimers;
  readonly #random: () => number;
  readonly #logger: IdentityLogger;
  readonly #onEvent: ((e: SecretManagerEvent) => void) | undefined;
  readonly #metrics: SecretManagerMetrics | undefined;
  /** Identity key -> who wants each new certificate of it (HBONE servers). Outlives forget(). */
  readonly #subscribers = new Map<string, Set<(cert: WorkloadCertificate) => void>>();
  readonly #entries = new Map<string, Entry>();
  /** Workload uid -> the identity it holds a reference on. */
  readonly #workloads = new Map<string, Identity>();
  readonly #refs = new Map<string, number>();
  #inFlight = 0;
  #seq = 0;
  #timer: TimerHandle;
  /** When the armed timer fires; Infinity when none is armed. */
  #timerAt = Infinity;
  #closed = false;
  readonly #counts = { fetches: 0, successes: 0, failures: 0 };

  constructor(opts: SecretManagerOptions) {
    this.#provider = opts.provider;
    this.#concurrency = opts.concurrency ?? 8;
    if (!(Number.isInteger(this.#concurrency) && this.#concurrency > 0)) {
      // As ztunnel: with 0, every fetch would wait forever.
      throw identityError(IdentityErrorCode.CONFIG, `concurrency must be a positive integer, got ${this.#concurrency}`);
    }
    this.#timers = opts.timers ?? realTimers;
    this.#random = opts.random ?? Math.random;
    this.#logger = opts.logger ?? silentLogger;
    this.#onEvent = opts.onEvent;
    this.#metrics = opts.metrics;
  }

  /**
   * The identity's certificate: the cached one while valid, else the one
   * being fetched. While the last fetch failed and no valid certificate is
   * left, fails at once with that error (ztunnel does the same); the retry
   * runs on its backoff schedule.
   */
  fetch(identity: Identity, priority: Priority = Priority.RealTime): Promise<WorkloadCertificate> {
    if (this.#closed) return Promise.reject(identityError(IdentityErrorCode.CLOSED, 'the secret manager is closed'));
    const entry = this.#entry(identity, priority);
    const now = this.#timers.now();
    if (entry.state === 'Available' && entry.cert && now < entry.cert.notAfter.getTime()) return Promise.resolve(entry.cert);
    if (entry.state === 'Unavailable' && entry.error) return Promise.reject(entry.error);
    // First fetch, or the cached one expired while its refresh is still out.
    if (!entry.inFlight) this.#enqueue(entry, priority, now);
    this.#pump();
    return new Promise((resolve, reject) => { entry.waiters.push({ resolve, reject }); });
  }

  /** The cached certificate if it is valid now; never waits. */
  find(identity: Identity): WorkloadCertificate | undefined {
    const entry = this.#entries.get(identityKey(identity));
    return entry?.cert && this.#timers.now() < entry.cert.notAfter.getTime() ? entry.cert : undefined;
  }

  /**
   * Calls `fn` with every certificate fetched for the identity from now on
   * (first fetch and each rotation), so a server can swap its context at
   * rotation instead of at its next connection. Returns the unsubscribe.
   */
  subscribe(identity: Identity, fn: (cert: WorkloadCertificate) => void): () => void {
    const key = identityKey(identity);
    let set = this.#subscribers.get(key);
    if (set === undefined) {
      set = new Set();
      this.#subscribers.set(key, set);
    }
    set.add(fn);
    return () => {
      const s = this.#subscribers.get(key);
      if (s?.delete(fn) === true && s.size === 0) this.#subscribers.delete(key);
    };
  }

  /**
   * The identity as a CertificateSource for an HBONE server: the valid
   * certificate now, one fetched on demand (RealTime), and each rotation.
   */
  sourceFor(identity: Identity): CertificateSource {
    return {
      current: () => this.find(identity),
      fetch: () => this.fetch(identity, Priority.RealTime),
      subscribe: (fn) => this.subscribe(identity, fn),
    };
  }

  /** Starts managing the identity and fetches it at Warmup priority, without waiting. */
  prefetch(identity: Identity): void {
    if (this.#closed) return;
    const entry = this.#entry(identity, Priority.Warmup);
    if (entry.state === 'Initializing' && !entry.inFlight) this.#enqueue(entry, Priority.Warmup, this.#timers.now());
    this.#pump();
  }

  /** Stops managing the identity: no more rotation; waiting callers get FORGOTTEN. */
  forget(identity: Identity): void {
    const key = identityKey(identity);
    const entry = this.#entries.get(key);
    if (!entry) return;
    this.#entries.delete(key);
    entry.queued = undefined;
    const err = identityError(IdentityErrorCode.FORGOTTEN, `the identity ${entry.uri} is no longer needed`);
    for (const w of entry.waiters.splice(0)) w.reject(err);
    this.#emit({ type: 'forget', identity: entry.uri });
    this.#logger.debug({ identity: entry.uri }, 'forgot certificate');
    this.#pump();
  }

  /**
   * A workload on this node that needs a certificate (HBONE or native
   * tunnel) appeared or changed identity. The first workload of an identity
   * prefetches it. Calling again with the same uid and identity is a no-op.
   */
  trackWorkload(uid: string, identity: Identity): void {
    const prev = this.#workloads.get(uid);
    if (prev && identityKey(prev) === identityKey(identity)) return;
    this.#workloads.set(uid, identity);
    const key = identityKey(identity);
    const refs = (this.#refs.get(key) ?? 0) + 1;
    this.#refs.set(key, refs);
    if (refs === 1) this.prefetch(identity);
    if (prev) this.#release(prev);
  }

  /** The workload left the node; the last one of an identity forgets its certificate. */
  untrackWorkload(uid: string): void {
    const prev = this.#workloads.get(uid);
    if (!prev) return;
    this.#workloads.delete(uid);
    this.#release(prev);
  }

  /** /config_dump `certificates`, sorted by identity as ztunnel does. */
  certificates(): CertsDump[] {
    const dumps = [...this.#entries.values()].map((e): CertsDump => {
      if (e.state === 'Available' && e.cert) return e.cert.toConfigDump();
      const state = e.state === 'Unavailable' ? `Unavailable: ${e.error?.message ?? 'unknown error'}` : 'Initializing';
      return { identity: e.uri, state, certChain: [], rootCerts: [] };
    });
    return dumps.sort((a, b) => (a.identity < b.identity ? -1 : a.identity > b.identity ? 1 : 0));
  }

  state(identity: Identity): CertState | undefined {
    return this.#entries.get(identityKey(identity))?.state;
  }

  stats(): SecretManagerStats {
    const queued = [...this.#entries.values()].filter((e) => e.queued).length;
    return { identities: this.#entries.size, inFlight: this.#inFlight, queued, ...this.#counts };
  }

  /** Stops every timer and fails waiting callers with CLOSED. The provider is the caller's to close. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#disarm();
    const err = identityError(IdentityErrorCode.CLOSED, 'the secret manager is closed');
    for (const e of this.#entries.values()) {
      e.queued = undefined;
      for (const w of e.waiters.splice(0)) w.reject(err);
    }
    this.#entries.clear();
    this.#subscribers.clear();
  }

  // ---- internals ----------------------------------------------------------

  #entry(identity: Identity, priority: Priority): Entry {
    const key = identityKey(identity);
    let entry = this.#entries.get(key);
    if (!entry) {
      entry = {
        identity, key, uri: spiffeUri(identity), state: 'Initializing', cert: undefined, error: undefined,
        failures: 0, queued: undefined, inFlight: false, waiters: [],
      };
      this.#entries.set(key, entry);
      this.#enqueue(entry, priority, this.#timers.now());
    }
    return entry;
  }

  /** Queue, or raise an already queued fetch (ztunnel's push_increase: higher priority, or same and sooner). */
  #enqueue(entry: Entry, priority: Priority, dueAt: number): void {
    const q = entry.queued;
    if (q && (q.priority > priority || (q.priority === priority && q.dueAt <= dueAt))) return;
    entry.queued = { priority, dueAt, seq: q?.seq ?? ++this.#seq };
  }

  #release(identity: Identity): void {
    const key = identityKey(identity);
    const refs = (this.#refs.get(key) ?? 0) - 1;
    if (refs > 0) {
      this.#refs.set(key, refs);
      return;
    }
    this.#refs.delete(key);
    this.forget(identity);
  }

  /**
   * Starts due fetches, best first, up to the concurrency limit, then arms
   * one timer for the next future one. A linear scan: a node holds at most a
   * few hundred identities and this runs on fetch edges, not per packet.
   */
  #pump(): void {
    if (this.#closed) return;
    const now = this.#timers.now();
    while (this.#inFlight < this.#concurrency) {
      let best: Entry | undefined;
      for (const e of this.#entries.values()) {
        const q = e.queued;
        if (!q || q.dueAt > now) continue;
        const b = best?.queued;
        if (!b || q.priority > b.priority || (q.priority === b.priority && (q.dueAt < b.dueAt || (q.dueAt === b.dueAt && q.seq < b.seq)))) best = e;
      }
      if (!best) break;
      this.#start(best);
    }
    let next = Infinity;
    for (const e of this.#entries.values()) {
      if (e.queued && e.queued.dueAt > now) next = Math.min(next, e.queued.dueAt);
    }
    this.#arm(next, now);
  }

  #arm(at: number, now: number): void {
    if (at === this.#timerAt) return;
    this.#disarm();
    if (at === Infinity) return;
    this.#timerAt = at;
    this.#timer = this.#timers.setTimeout(() => {
      this.#timerAt = Infinity;
      this.#pump();
    }, Math.min(Math.max(0, at - now), MAX_TIMER_MS));
  }

  #disarm(): void {
    if (this.#timerAt !== Infinity) this.#timers.clearTimeout(this.#timer);
    this.#timerAt = Infinity;
  }

  #start(entry: Entry): void {
    const priority = entry.queued?.priority ?? Priority.Background;
    entry.queued = undefined;
    entry.inFlight = true;
    this.#inFlight++;
    this.#counts.fetches++;
    this.#emit({ type: 'fetch-start', identity: entry.uri, priority });
    // A provider that throws synchronously is a failed fetch like any other.
    Promise.resolve().then(() => this.#provider.fetch(entry.identity)).then(
      (cert) => {
        const bad = this.#unusable(entry, cert);
        if (bad === undefined) this.#done(entry, cert, undefined);
        else this.#done(entry, undefined, bad);
      },
      (err: unknown) => { this.#done(entry, undefined, asIdentityError(err, entry.uri)); },
    );
  }

  /**
   * Fail closed on what a provider should never return: a certificate for
   * another identity (the CA client checks the leaf's SAN; this covers any
   * provider), or one that is not valid now.
   */
  #unusable(entry: Entry, cert: WorkloadCertificate): IdentityError | undefined {
    if (!sameIdentity(cert.identity, entry.identity)) {
      return identityError(IdentityErrorCode.SAN_MISMATCH, `asked for ${entry.uri}, got a certificate for ${spiffeUri(cert.identity)}`);
    }
    const now = this.#timers.now();
    if (cert.isExpired(now) || now < cert.notBefore.getTime()) {
      return identityError(IdentityErrorCode.CERT_EXPIRED,
        `the certificate issued for ${entry.uri} is valid only from ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()}`);
    }
    return undefined;
  }

  #done(entry: Entry, cert: WorkloadCertificate | undefined, error: IdentityError | undefined): void {
    this.#inFlight--;
    entry.inFlight = false;
    // Forgotten (or closed) meanwhile: drop the result, as ztunnel's Fetch::Forgetting.
    if (this.#closed || this.#entries.get(entry.key) !== entry) {
      this.#pump();
      return;
    }
    const now = this.#timers.now();
    if (cert) {
      this.#counts.successes++;
      entry.state = 'Available';
      entry.cert = cert;
      entry.error = undefined;
      entry.failures = 0;
      const refreshAt = rotationTime(cert, now);
      this.#enqueue(entry, Priority.Background, refreshAt.getTime());
      this.#emit({ type: 'fetch-ok', identity: entry.uri, serial: cert.serial, refreshAt, notAfter: cert.notAfter });
      this.#logger.debug({ identity: entry.uri, refreshAt: refreshAt.toISOString() }, 'certificate fetched');
      this.#metrics?.fetched('ok');
      for (const w of entry.waiters.splice(0)) w.resolve(cert);
      this.#publish(entry.key, cert);
    } else if (error) {
      this.#counts.failures++;
      this.#metrics?.fetched(fetchFailureReason(error));
      const retryInMs = certRetryDelay(entry.failures++, this.#random());
      const old = entry.cert;
      const kept = old !== undefined && now < old.notAfter.getTime();
      if (old && kept) {
        // Keep serving the old certificate; try again before it runs out.
        this.#enqueue(entry, Priority.Background, Math.min(now + retryInMs, old.notAfter.getTime()));
        this.#logger.warn({ identity: entry.uri, code: error.code, err: error.message, retryInMs, expires: old.notAfter.toISOString() }, 'certificate renewal failed; keeping the valid one');
        for (const w of entry.waiters.splice(0)) w.resolve(old);
      } else {
        entry.state = 'Unavailable';
        entry.cert = undefined;
        entry.error = error;
        this.#enqueue(entry, Priority.Background, now + retryInMs);
        this.#logger.warn({ identity: entry.uri, code: error.code, err: error.message, retryInMs }, 'certificate fetch failed and no valid certificate is left');
        for (const w of entry.waiters.splice(0)) w.reject(error);
      }
      this.#emit({ type: 'fetch-error', identity: entry.uri, error, retryInMs, kept });
    }
    this.#pump();
  }

  #publish(key: string, cert: WorkloadCertificate): void {
    for (const fn of this.#subscribers.get(key) ?? []) {
      try {
        fn(cert);
      } catch (err) {
        this.#logger.warn({ identity: spiffeUri(cert.identity), err: String(err) }, 'a certificate subscriber threw');
      }
    }
  }

  #emit(e: SecretManagerEvent): void {
    try {
      this.#onEvent?.(e);
    } catch (err) {
      this.#logger.warn({ err: String(err) }, 'secret manager event hook threw');
    }
  }
}
