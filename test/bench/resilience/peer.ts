// SPDX-License-Identifier: Apache-2.0
// The two ends of the resilience scenario's traffic, run as processes inside
// lab pods (never in the root netns):
//   serve HOST PORT   a line echo server (every byte back, FIN answered by FIN)
//   blackhole HOST PORT  accepts and never reads nor answers
//   load JSON         new connections in a loop and long-lived streams per
//                     target until `durationMs`; prints one JSON result line
//   hold JSON         opens `conns` connections per target, proves each with
//                     one echo, prints a `held` line, holds them `holdMs`,
//                     closes them and prints the result line
// Everything is bounded in count and time; the parent kills it by PID anyway.
import net from 'node:net';

export interface Target {
  name: string;
  host: string;
  port: number;
}

export interface LoadSpec {
  targets: Target[];
  durationMs: number;
  /** Pause between two new connections of one target's loop. */
  intervalMs: number;
  /** Long-lived streams per target. */
  streams: number;
}

export interface HoldSpec {
  targets: Target[];
  conns: number;
  holdMs: number;
  /** false: count a connection once connected and written to, without waiting for an echo (a silent upstream). */
  prove?: boolean;
}

/** New-connection figures of one target. */
export interface ConnFigures {
  attempted: number;
  ok: number;
  /** Refused, timed out, or no echo: the user saw an error. */
  failed: number;
  /** Of the failed, how many were reset after connecting. */
  reset: number;
  /** Longest time between two successful new connections (or the run's edges). */
  longestGapMs: number;
  errors: Record<string, number>;
  /** The first few failures: when (epoch ms, at the attempt's start) and how. */
  failures: { at: number; ms: number; code: string }[];
  /** When (epoch ms) the last failed attempt ended; 0 if none failed. */
  lastFailureAt: number;
}

/** Long-lived stream figures of one target. */
export interface StreamFigures {
  opened: number;
  /** Streams open from the start to the end of the run. */
  survived: number;
  /** Ended by the far side with a FIN, every line echoed in full. */
  endedClean: number;
  /** Ended with a FIN in the middle of a line. */
  endedMidWrite: number;
  reset: number;
  /** Longest time from a stream's end to its replacement's first echo. */
  longestGapMs: number;
}

export interface LoadResult {
  targets: Record<string, { conns: ConnFigures; streams: StreamFigures }>;
}

export interface HoldResult {
  targets: Record<string, { opened: number; failed: number; closedEarly: number; errors: Record<string, number> }>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const errKey = (e: unknown): string => (e as NodeJS.ErrnoException).code ?? (e as Error).message.slice(0, 40);

/** One connection, one echoed line, a clean close; rejects on anything else within `timeoutMs`. */
export function pingOnce(t: Target, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let connected = false;
    let got = '';
    const s = net.connect({ host: t.host, port: t.port });
    const timer = setTimeout(() => { s.destroy(); reject(Object.assign(new Error('timeout'), { code: 'TIMEOUT', connected })); }, timeoutMs);
    s.on('connect', () => { connected = true; s.write('ping\n'); });
    s.on('data', (d: Buffer) => {
      got += d.toString();
      if (got === 'ping\n') {
        clearTimeout(timer);
        s.end();
        s.once('close', () => { resolve(); });
      }
    });
    s.on('error', (e) => { clearTimeout(timer); s.destroy(); reject(Object.assign(e, { connected })); });
    s.on('end', () => { if (got !== 'ping\n') { clearTimeout(timer); s.destroy(); reject(Object.assign(new Error('closed before echo'), { code: 'EOF', connected })); } });
  });
}

/** When the load ends; moved earlier when the parent closes our stdin. */
interface Clock { until: number }

async function connLoop(t: Target, spec: LoadSpec, clock: Clock): Promise<ConnFigures> {
  const f: ConnFigures = { attempted: 0, ok: 0, failed: 0, reset: 0, longestGapMs: 0, errors: {}, failures: [], lastFailureAt: 0 };
  let lastOk = performance.now();
  while (Date.now() < clock.until) {
    f.attempted++;
    const at = Date.now();
    try {
      await pingOnce(t, 3000);
      f.ok++;
      const now = performance.now();
      f.longestGapMs = Math.max(f.longestGapMs, now - lastOk);
      lastOk = now;
    } catch (e) {
      f.failed++;
      const key = errKey(e);
      f.errors[key] = (f.errors[key] ?? 0) + 1;
      if (f.failures.length < 10) f.failures.push({ at, ms: Date.now() - at, code: key });
      f.lastFailureAt = Date.now();
      if (key === 'ECONNRESET' && (e as { connected?: boolean }).connected === true) f.reset++;
    }
    await sleep(spec.intervalMs);
  }
  f.longestGapMs = Math.round(Math.max(f.longestGapMs, performance.now() - lastOk));
  return f;
}

/** A stream writes a numbered line every 50 ms and checks each echo; replaced when it ends. */
async function streamLoop(t: Target, clock: Clock, f: StreamFigures, first: boolean): Promise<void> {
  let original = first;
  let endedAt: number | undefined;
  while (Date.now() < clock.until) {
    f.opened++;
    const outcome = await new Promise<'alive' | 'clean' | 'mid' | 'reset' | 'error'>((resolve) => {
      const s = net.connect({ host: t.host, port: t.port });
      let sent = '';
      let got = '';
      let n = 0;
      const tick = setInterval(() => {
        if (Date.now() >= clock.until) { done('alive'); s.end(); return; }
        const line = `${n++}\n`;
        sent += line;
        s.write(line);
      }, 50);
      let settled = false;
      function done(o: 'alive' | 'clean' | 'mid' | 'reset' | 'error'): void {
        if (settled) return;
        settled = true;
        clearInterval(tick);
        resolve(o);
      }
      s.on('data', (d: Buffer) => {
        got += d.toString();
        if (endedAt !== undefined) { f.longestGapMs = Math.max(f.longestGapMs, Math.round(performance.now() - endedAt)); endedAt = undefined; }
      });
      s.on('end', () => { s.end(); done(got.endsWith('\n') || got === '' ? 'clean' : 'mid'); });
      s.on('error', (e) => { s.destroy(); done(errKey(e) === 'ECONNRESET' ? 'reset' : 'error'); });
      s.on('close', () => { done(sent.startsWith(got) && (got === '' || got.endsWith('\n')) ? 'clean' : 'mid'); });
    });
    if (outcome === 'alive') {
      if (original) f.survived++;
      return;
    }
    original = false;
    endedAt ??= performance.now();
    if (outcome === 'clean') f.endedClean++;
    else if (outcome === 'mid') f.endedMidWrite++;
    else f.reset++;
    await sleep(20);
  }
}

export async function runLoad(spec: LoadSpec, clock: Clock = { until: Date.now() + spec.durationMs }): Promise<LoadResult> {
  const out: LoadResult = { targets: {} };
  await Promise.all(spec.targets.map(async (t) => {
    const streams: StreamFigures = { opened: 0, survived: 0, endedClean: 0, endedMidWrite: 0, reset: 0, longestGapMs: 0 };
    const [conns] = await Promise.all([
      connLoop(t, spec, clock),
      ...Array.from({ length: spec.streams }, () => streamLoop(t, clock, streams, true)),
    ]);
    out.targets[t.name] = { conns, streams };
  }));
  return out;
}

/** Opens and proves `conns` connections per target (at most 256 connecting at once), holds, closes. */
export async function runHold(spec: HoldSpec, onHeld: (opened: number) => void): Promise<HoldResult> {
  const out: HoldResult = { targets: {} };
  const sockets: net.Socket[] = [];
  const phase = { closing: false };
  for (const t of spec.targets) {
    const r = { opened: 0, failed: 0, closedEarly: 0, errors: {} as Record<string, number> };
    out.targets[t.name] = r;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < spec.conns) {
        next++;
        try {
          sockets.push(await openProved(t, r, phase, spec.prove ?? true));
          r.opened++;
        } catch (e) {
          r.failed++;
          const key = errKey(e);
          r.errors[key] = (r.errors[key] ?? 0) + 1;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(256, spec.conns) }, worker));
  }
  onHeld(sockets.length);
  await sleep(spec.holdMs);
  phase.closing = true;
  await Promise.all(sockets.map((s) => new Promise<void>((resolve) => {
    if (s.destroyed) { resolve(); return; }
    const t = setTimeout(() => { s.destroy(); resolve(); }, 5000);
    s.once('close', () => { clearTimeout(t); resolve(); });
    // A client waiting on a silent upstream gives up: it aborts (RST), it does not half-close.
    if (spec.prove === false) s.resetAndDestroy();
    else s.end();
  })));
  return out;
}

/** A connection proved by one echo; a FIN from the far side before we close counts as closed early. */
function openProved(t: Target, r: { closedEarly: number }, phase: { closing: boolean }, prove: boolean): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: t.host, port: t.port });
    const timer = setTimeout(() => { s.destroy(); reject(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })); }, 10_000);
    let proved = false;
    s.on('connect', () => {
      s.write('x\n');
      if (!prove) { proved = true; clearTimeout(timer); resolve(s); }
    });
    s.once('data', () => { if (!proved) { proved = true; clearTimeout(timer); resolve(s); } });
    s.on('error', (e) => { clearTimeout(timer); s.destroy(); if (!proved) reject(e); });
    s.on('end', () => { if (proved && !phase.closing) r.closedEarly++; s.end(); });
  });
}

function serve(host: string, port: number): void {
  const server = net.createServer((s) => {
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  server.maxConnections = 100_000;
  server.listen({ host, port, backlog: 4096 });
}

/** Accepts and never reads nor answers: the upstream that hangs. */
function blackhole(host: string, port: number): void {
  const server = net.createServer({ pauseOnConnect: true }, (s) => { s.on('error', () => s.destroy()); });
  server.listen({ host, port, backlog: 4096 });
}

async function main(argv: readonly string[]): Promise<void> {
  const [mode, a, b] = argv;
  if (mode === 'serve' && a !== undefined && b !== undefined) { serve(a, Number(b)); return; }
  if (mode === 'blackhole' && a !== undefined && b !== undefined) { blackhole(a, Number(b)); return; }
  if (mode === 'load' && a !== undefined) {
    const spec = JSON.parse(a) as LoadSpec;
    const clock = { until: Date.now() + spec.durationMs };
    // The parent ends the load early by closing our stdin.
    process.stdin.on('end', () => { clock.until = Math.min(clock.until, Date.now()); }).resume();
    process.stdout.write(`${JSON.stringify(await runLoad(spec, clock))}\n`);
    process.stdin.destroy();
    return;
  }
  if (mode === 'hold' && a !== undefined) {
    const r = await runHold(JSON.parse(a) as HoldSpec, (n) => { process.stdout.write(`${JSON.stringify({ held: n })}\n`); });
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }
  process.stderr.write('usage: peer.ts serve HOST PORT | load JSON | hold JSON\n');
  process.exitCode = 2;
}

if (import.meta.url === `file://${process.argv[1]}`) await main(process.argv.slice(2));
