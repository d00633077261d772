// SPDX-License-Identifier: Apache-2.0
// SecretManager behaviour on a fake clock: one fetch per identity however many
// callers, at most 8 in flight, RealTime before Warmup before Background,
// rotation at half-life, capped jittered backoff, a valid old certificate
// kept through failures and dropped once expired, and workload refcounts.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { CERT_RETRY_MAX_MS, certRetryDelay } from './backoff.ts';
import { WorkloadCertificate } from './certificate.ts';
import type { CertificateProvider } from './certificate.ts';
import { createCsr } from './csr.ts';
import { IdentityError, IdentityErrorCode, identityError } from './error.ts';
import { LocalCa } from './local-ca.ts';
import { Priority, SecretManager } from './manager.ts';
import type { ManagerTimers, SecretManagerEvent, SecretManagerOptions, TimerHandle } from './manager.ts';
import { spiffeUri } from './spiffe.ts';
import type { Identity } from './spiffe.ts';

const T0 = Date.UTC(2030, 0, 1);

/** A clock that moves only when told, firing due timers in order. */
class FakeTime implements ManagerTimers {
  t = T0;
  readonly #timers = new Map<number, { at: number; fn: () => void }>();
  #ids = 0;
  now(): number { return this.t; }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = ++this.#ids;
    this.#timers.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimeout(handle: TimerHandle): void { this.#timers.delete(handle as number); }
  get pending(): number { return this.#timers.size; }
  /** When the next timer fires, if any. */
  get next(): number | undefined {
    const at = Math.min(...[...this.#timers.values()].map((x) => x.at));
    return at === Infinity ? undefined : at;
  }
  async advanceTo(target: number): Promise<void> {
    for (;;) {
      const due = [...this.#timers].filter(([, x]) => x.at <= target).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.#timers.delete(due[0]);
      this.t = due[1].at;
      due[1].fn();
      await flush();
    }
    this.t = target;
    await flush();
  }
  advance(ms: number): Promise<void> { return this.advanceTo(this.t + ms); }
}

/** Lets promise chains (fetch results, waiters) run. */
async function flush(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => { setImmediate(resolve); });
}

interface Call { identity: Identity; uri: string; at: number; resolve: (c: WorkloadCertificate) => void; reject: (e: unknown) => void }

/** A provider whose every fetch waits for the test to answer it. */
class FakeProvider implements CertificateProvider {
  readonly calls: Call[] = [];
  readonly #time: FakeTime;
  constructor(time: FakeTime) { this.#time = time; }
  fetch(identity: Identity): Promise<WorkloadCertificate> {
    return new Promise((resolve, reject) => {
      this.calls.push({ identity, uri: spiffeUri(identity), at: this.#time.t, resolve, reject });
    });
  }
  get uris(): string[] { return this.calls.map((c) => c.uri); }
  last(): Call {
    const c = this.calls.at(-1);
    assert.ok(c, 'no provider call');
    return c;
  }
}

const id = (sa: string): Identity => ({ trustDomain: 'cluster.local', namespace: 'test', serviceAccount: sa });

let time: FakeTime;
let ca: LocalCa;

before(async () => {
  time = new FakeTime();
  ca = await LocalCa.generate({ now: () => time.t, maxTtlSeconds: 365 * 86_400 });
});

/** A real certificate issued at the fake now, living `ttlS` seconds (plus the CA's 60 s backdate). */
async function certFor(identity: Identity, ttlS = 3540): Promise<WorkloadCertificate> {
  const { csrPem, keyPem } = await createCsr(identity);
  return WorkloadCertificate.fromCertChain(identity, [await ca.sign(csrPem, ttlS), ca.rootPem], keyPem);
}

async function answer(call: Call, ttlS?: number): Promise<WorkloadCertificate> {
  const cert = await certFor(call.identity, ttlS);
  call.resolve(cert);
  await flush();
  return cert;
}

async function fail(call: Call, msg = 'istiod is down'): Promise<void> {
  call.reject(identityError(IdentityErrorCode.CA_RPC, msg));
  await flush();
}

function setup(opts: Partial<SecretManagerOptions> = {}): { sm: SecretManager; provider: FakeProvider; events: SecretManagerEvent[] } {
  time.t = T0;
  const provider = new FakeProvider(time);
  const events: SecretManagerEvent[] = [];
  const sm = new SecretManager({ provider, timers: time, random: () => 0.5, onEvent: (e) => events.push(e), ...opts });
  return { sm, provider, events };
}

test('concurrent fetches of one identity share one CA call, and later ones hit the cache', async () => {
  const { sm, provider } = setup();
  const a = id('a');
  const waits = [sm.fetch(a), sm.fetch(a), sm.fetch(a, Priority.Background)];
  await flush();
  assert.equal(provider.calls.length, 1);
  const cert = await answer(provider.last());
  for (const got of await Promise.all(waits)) assert.equal(got, cert);
  assert.equal(await sm.fetch(a), cert);
  assert.equal(sm.find(a), cert);
  assert.equal(provider.calls.length, 1);
  sm.close();
});

test('at most 8 fetches are in flight; the rest start as earlier ones finish', async () => {
  const { sm, provider } = setup();
  const ids = Array.from({ length: 12 }, (_, i) => id(`n${i}`));
  const waits = ids.map((x) => sm.fetch(x));
  await flush();
  assert.equal(provider.calls.length, 8);
  assert.deepEqual(sm.stats(), { identities: 12, inFlight: 8, queued: 4, fetches: 8, successes: 0, failures: 0 });
  await answer(provider.calls[3] as Call);
  assert.equal(provider.calls.length, 9);
  assert.equal(sm.stats().inFlight, 8);
  for (let i = 0; i < 12; i++) {
    const call = provider.calls[i];
    if (i !== 3 && call) await answer(call);
  }
  assert.equal(provider.calls.length, 12);
  await Promise.all(waits);
  assert.equal(sm.stats().inFlight, 0);
  sm.close();
});

test('queued fetches start RealTime first, then Warmup, then Background (ztunnel test_priority)', async () => {
  const { sm, provider } = setup({ concurrency: 1 });
  const waits = [
    sm.fetch(id('id1'), Priority.Background),
    sm.fetch(id('id2'), Priority.Background),
    sm.fetch(id('id3'), Priority.Warmup),
    sm.fetch(id('id4'), Priority.RealTime),
  ];
  for (let i = 0; i < 4; i++) {
    await flush();
    await answer(provider.last());
  }
  await Promise.all(waits);
  assert.deepEqual(provider.uris.map((u) => u.split('/').at(-1)), ['id1', 'id4', 'id3', 'id2']);
  sm.close();
});

test('a RealTime fetch raises an identity already queued at Warmup (ztunnel test_warmup_existing)', async () => {
  const { sm, provider } = setup({ concurrency: 1 });
  const warm = [1, 2, 3, 4].map((i) => sm.fetch(id(`warmup-${i}`), Priority.Warmup));
  const now = sm.fetch(id('warmup-4'), Priority.RealTime);
  await flush();
  await answer(provider.last());
  await flush();
  assert.deepEqual(provider.uris.map((u) => u.split('/').at(-1)), ['warmup-1', 'warmup-4']);
  await answer(provider.last());
  await now;
  await answer(provider.last());
  await answer(provider.last());
  assert.deepEqual(provider.uris.map((u) => u.split('/').at(-1)), ['warmup-1', 'warmup-4', 'warmup-2', 'warmup-3']);
  await Promise.all(warm);
  sm.close();
});

test('certificates rotate at half-life; the old one serves until the new one arrives', async () => {
  const { sm, provider, events } = setup();
  const a = id('a');
  const p = sm.fetch(a);
  await flush();
  const first = await answer(provider.last(), 3540);
  assert.equal(await p, first);
  const half = first.notBefore.getTime() + (first.notAfter.getTime() - first.notBefore.getTime()) / 2;
  assert.equal(first.refreshAt.getTime(), half);
  assert.equal(half, T0 + 1740_000);

  await time.advanceTo(half - 1);
  assert.equal(provider.calls.length, 1, 'nothing before half-life');
  await time.advance(1);
  assert.equal(provider.calls.length, 2, 'refresh at half-life');
  assert.equal(provider.last().at, half);
  assert.deepEqual(events.flatMap((e) => (e.type === 'fetch-start' ? [e.priority] : [])), [Priority.RealTime, Priority.Background]);
  assert.equal(await sm.fetch(a), first, 'still valid while the refresh is out');

  const second = await answer(provider.last(), 3540);
  assert.equal(await sm.fetch(a), second);
  assert.notEqual(second.serial, first.serial);
  assert.equal(time.next, second.refreshAt.getTime(), 'the next rotation is armed');
  sm.close();
});

test('retry delays: ×2 from 1 s, ±20% jitter, never above 150 s', () => {
  const mid = Array.from({ length: 11 }, (_, i) => certRetryDelay(i, 0.5));
  assert.deepEqual(mid, [1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 150000, 150000, 150000]);
  for (let i = 0; i < 12; i++) {
    const base = Math.min(1000 * 2 ** i, CERT_RETRY_MAX_MS);
    const lo = certRetryDelay(i, 0);
    const hi = certRetryDelay(i, 0.999999);
    assert.equal(lo, Math.round(base * 0.8), `lower bound at ${i}`);
    assert.ok(hi <= Math.min(base * 1.2, CERT_RETRY_MAX_MS) && hi >= Math.min(base * 1.2, CERT_RETRY_MAX_MS) - 1, `upper bound at ${i}: ${hi}`);
    assert.ok(hi <= CERT_RETRY_MAX_MS);
  }
  assert.equal(certRetryDelay(7, 0.999999), CERT_RETRY_MAX_MS, '128 s + 20% is capped');
  assert.equal(certRetryDelay(50, 0), 120000);
});

test('failed fetches retry on the jittered backoff; callers get the error meanwhile', async () => {
  let r = 0;
  const { sm, provider, events } = setup({ random: () => r });
  const a = id('a');
  // The assertion is attached first, so the rejection is never unhandled.
  const p = assert.rejects(sm.fetch(a), (e: unknown) => e instanceof IdentityError && e.code === IdentityErrorCode.CA_RPC);
  await flush();
  await fail(provider.last());
  await p;
  assert.equal(sm.state(a), 'Unavailable');
  await assert.rejects(sm.fetch(a), /istiod is down/);
  assert.equal(provider.calls.length, 1, 'no extra call: the retry keeps its schedule');

  // random 0: the first retry comes after 0.8 s, exactly.
  await time.advance(799);
  assert.equal(provider.calls.length, 1);
  await time.advance(1);
  assert.equal(provider.calls.length, 2);
  r = 0.999999;
  await fail(provider.last());
  const errs = events.flatMap((e) => (e.type === 'fetch-error' ? [e.retryInMs] : []));
  assert.deepEqual(errs, [800, 2400]);
  await time.advance(2400);
  assert.equal(provider.calls.length, 3);
  const cert = await answer(provider.last());
  assert.equal(sm.state(a), 'Available');
  assert.equal(await sm.fetch(a), cert);
  assert.equal(sm.stats().failures, 2);
  sm.close();
});

test('a still-valid certificate is kept through failed renewals and dropped once it expires', async () => {
  const { sm, provider, events } = setup();
  const a = id('a');
  const p = sm.fetch(a);
  await flush();
  const cert = await answer(provider.last(), 540); // valid 600 s, refresh at +270 s
  await p;
  const expiry = cert.notAfter.getTime();

  // Renewal starts at half-life and every retry fails.
  const retryTimes: number[] = [];
  while (time.t < expiry) {
    const next = time.next;
    assert.ok(next !== undefined, 'a retry is always armed');
    await time.advanceTo(next);
    retryTimes.push(provider.last().at);
    if (time.t < expiry) {
      assert.equal(await sm.fetch(a), cert, 'the old certificate still serves');
      assert.equal(sm.state(a), 'Available');
    }
    await fail(provider.last());
  }
  assert.equal(retryTimes[0], cert.refreshAt.getTime());
  const gaps = retryTimes.slice(1).map((t, i) => t - (retryTimes[i] ?? 0));
  assert.deepEqual(gaps.slice(0, 8), [1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000]);
  assert.equal(retryTimes.at(-1), expiry, 'the last retry is at expiry, not past it');
  assert.ok(events.some((e) => e.type === 'fetch-error' && e.kept));

  // The failure at expiry drops it.
  assert.equal(sm.state(a), 'Unavailable');
  assert.equal(sm.find(a), undefined);
  await assert.rejects(sm.fetch(a), /istiod is down/);
  const [dump] = sm.certificates();
  assert.deepEqual(dump, { identity: spiffeUri(a), state: 'Unavailable: istiod is down', certChain: [], rootCerts: [] });

  // And the next success restores it.
  await time.advanceTo(time.next ?? Infinity);
  const back = await answer(provider.last());
  assert.equal(await sm.fetch(a), back);
  sm.close();
});

test('workloads on the node hold their identity: first prefetches at Warmup, last forgets', async () => {
  const { sm, provider, events } = setup();
  const a = id('a');
  const b = id('b');
  sm.trackWorkload('pod-1', a);
  await flush();
  assert.equal(provider.calls.length, 1);
  assert.deepEqual(events[0], { type: 'fetch-start', identity: spiffeUri(a), priority: Priority.Warmup });
  sm.trackWorkload('pod-2', a);
  sm.trackWorkload('pod-2', a);
  await flush();
  assert.equal(provider.calls.length, 1, 'one fetch per identity');
  await answer(provider.last());
  assert.equal(sm.state(a), 'Available');

  sm.untrackWorkload('pod-1');
  assert.equal(sm.state(a), 'Available', 'pod-2 still holds it');
  sm.untrackWorkload('pod-2');
  assert.equal(sm.state(a), undefined, 'forgotten with its last workload');
  assert.equal(time.pending, 0, 'no rotation timer left behind');
  assert.deepEqual(sm.certificates(), []);

  // A workload that changes identity moves its reference.
  sm.trackWorkload('pod-3', a);
  await flush();
  const waitA = sm.fetch(a);
  sm.trackWorkload('pod-3', b);
  await assert.rejects(waitA, (e: unknown) => e instanceof IdentityError && e.code === IdentityErrorCode.FORGOTTEN);
  assert.equal(sm.state(a), undefined);
  assert.equal(sm.state(b), 'Initializing');
  // The late answer for the forgotten identity is dropped.
  const lateA = provider.calls.find((c) => c.uri === spiffeUri(a) && c.at === time.t);
  assert.ok(lateA);
  await answer(lateA);
  assert.equal(sm.state(a), undefined);
  sm.untrackWorkload('pod-3');
  sm.untrackWorkload('unknown-pod');
  assert.equal(sm.stats().identities, 0);
  sm.close();
});

test('certificates() reports each identity in ztunnel\'s shape, sorted', async () => {
  const { sm, provider } = setup();
  void sm.fetch(id('zz-pending')).catch(() => undefined);
  const ok = sm.fetch(id('aa-ok'));
  const bad = assert.rejects(sm.fetch(id('mm-bad')), /nope/);
  await flush();
  const byUri = (sa: string): Call => {
    const c = provider.calls.find((x) => x.uri === spiffeUri(id(sa)));
    assert.ok(c);
    return c;
  };
  const cert = await answer(byUri('aa-ok'));
  await fail(byUri('mm-bad'), 'nope');
  await ok;
  await bad;
  const dump = sm.certificates();
  assert.deepEqual(dump.map((d) => [d.identity.split('/').at(-1), d.state]), [['aa-ok', 'Available'], ['mm-bad', 'Unavailable: nope'], ['zz-pending', 'Initializing']]);
  assert.deepEqual(dump[0], cert.toConfigDump());
  sm.close();
});

test('close() stops every timer and fails waiting callers', async () => {
  const { sm, provider } = setup();
  const done = sm.fetch(id('a'));
  const waiting = sm.fetch(id('b'));
  await flush();
  await answer(provider.calls[0] as Call);
  await done;
  assert.equal(time.pending, 1, 'the rotation timer');
  sm.close();
  assert.equal(time.pending, 0);
  await assert.rejects(waiting, (e: unknown) => e instanceof IdentityError && e.code === IdentityErrorCode.CLOSED);
  await assert.rejects(sm.fetch(id('a')), (e: unknown) => e instanceof IdentityError && e.code === IdentityErrorCode.CLOSED);
  // A late answer after close changes nothing and arms nothing.
  await answer(provider.calls[1] as Call);
  assert.equal(time.pending, 0);
  assert.throws(() => new SecretManager({ provider, concurrency: 0 }), /concurrency/);
});

test('subscribers get the first certificate and each rotation; sourceFor gives the valid one, never an expired one', async () => {
  const { sm, provider } = setup();
  const a = id('a');
  const seen: string[] = [];
  const unsubscribe = sm.subscribe(a, (c) => { seen.push(c.serial); });
  const source = sm.sourceFor(a);
  assert.equal(source.current(), undefined, 'nothing before the first fetch');
  const onDemand = source.fetch();
  await flush();
  assert.deepEqual(provider.calls.map((c) => c.uri), [spiffeUri(a)]);
  const first = await answer(provider.last(), 3540);
  assert.equal(await onDemand, first);
  assert.equal(source.current(), first);

  await time.advanceTo(first.refreshAt.getTime());
  const second = await answer(provider.last(), 3540);
  assert.deepEqual(seen, [first.serial, second.serial], 'pushed at first fetch and at rotation');
  assert.equal(source.current(), second);

  // The renewal fails until the certificate runs out: current() stops offering it at expiry.
  unsubscribe();
  await time.advanceTo(second.refreshAt.getTime());
  while (time.t < second.notAfter.getTime()) {
    await fail(provider.last());
    assert.equal(source.current(), time.t < second.notAfter.getTime() ? second : undefined);
    await time.advanceTo(time.next ?? Infinity);
  }
  await fail(provider.last());
  assert.equal(source.current(), undefined, 'an expired certificate is never offered');
  await assert.rejects(source.fetch(), /istiod is down/);
  await time.advanceTo(time.next ?? Infinity);
  await answer(provider.last());
  assert.deepEqual(seen, [first.serial, second.serial], 'no push after unsubscribe');
  sm.close();
});

test('a certificate for another identity, or one not valid now, is a failed fetch: counted, logged, the valid one kept', async () => {
  const results: string[] = [];
  const warnings: string[] = [];
  const logger = { debug: () => undefined, info: () => undefined, warn: (f: Record<string, unknown>, msg: string) => { warnings.push(`${msg}: ${String(f.err)}`); } };
  const { sm, provider } = setup({ metrics: { fetched: (r) => { results.push(r); } }, logger });
  const a = id('a');
  const p = sm.fetch(a);
  await flush();
  const good = await answer(provider.last(), 3540);
  assert.equal(await p, good);

  // At rotation the CA answers with another identity's certificate.
  await time.advanceTo(good.refreshAt.getTime());
  provider.last().resolve(await certFor(id('mallory')));
  await flush();
  assert.equal(sm.find(a), good, 'the valid certificate is kept');
  assert.match(warnings.at(-1) ?? '', /renewal failed.*asked for spiffe:\/\/cluster.local\/ns\/test\/sa\/a, got a certificate for .*\/sa\/mallory/);

  // Then with one that expired before it arrived (issued an hour "ago").
  await time.advanceTo(time.next ?? Infinity);
  const now = time.t;
  time.t = now - 3_600_000;
  const stale = await certFor(a, 60);
  time.t = now;
  provider.last().resolve(stale);
  await flush();
  assert.equal(sm.find(a), good);
  assert.match(warnings.at(-1) ?? '', /valid only from/);

  // A CA that refuses.
  await time.advanceTo(time.next ?? Infinity);
  await fail(provider.last(), 'PERMISSION_DENIED');
  assert.deepEqual(results, ['ok', 'san_mismatch', 'cert_expired', 'ca_rpc']);
  assert.equal(sm.state(a), 'Available');
  sm.close();
});

test('a certificate already past its half-life on arrival renews half way through what is left, not in a loop', async () => {
  const { sm, provider } = setup();
  const a = id('a');
  const p = sm.fetch(a);
  await flush();
  // The CA back-dates by 60 s: a 20 s certificate's half-life is 20 s in the past.
  const cert = await answer(provider.last(), 20);
  await p;
  assert.ok(cert.refreshAt.getTime() < time.t);
  assert.equal(time.next, time.t + 10_000, 'renewed 10 s from now, half of the 20 s left');
  assert.equal(provider.calls.length, 1, 'no immediate refetch');
  sm.close();
});
