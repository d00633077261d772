// SPDX-License-Identifier: Apache-2.0
// `npm run bench -- resilience [--parts upgrade,soak,fuzz] [--soak-conns N]`:
// each part on a fresh lab (fuzz needs none), one JSON object or a table.
//   upgrade  steady load on every path while each node's daemon is replaced
//   soak     N connections per path held, then closed; daemon fds/RSS/heap
//   fuzz     every untrusted-input parser under the coverage-guided fuzzer
import fs from 'node:fs';
import { fuzzReport, type FuzzReport } from '../../fuzz/report.ts';
import { runTargets } from '../../fuzz/run.ts';
import { targetNames } from '../../fuzz/targets/index.ts';
import type { LabNode } from '../../lab/index.ts';
import { DRAIN_MS, nofileLimit, PEER, startFleet, type Fleet } from './fleet.ts';
import type { HoldResult, HoldSpec, LoadResult, LoadSpec } from './peer.ts';

export const PARTS = ['upgrade', 'soak', 'fuzz'] as const;
export type Part = (typeof PARTS)[number];

export interface ResilienceOptions {
  parts: readonly Part[];
  /** Connections per path held by the soak. */
  soakConns: number;
  soakHoldMs: number;
  fuzzSeconds: number;
  /** Only these fuzz targets (all when undefined). */
  fuzzTargets?: readonly string[];
  /** Long-lived streams per path during the upgrade. */
  streams: number;
  log: (line: string) => void;
}

export interface UpgradeReport {
  order: 'surge: new daemon started and holding the pods before SIGTERM to the old';
  drain_ms: number;
  /** Per node: ms from SIGTERM to the old daemon's exit. */
  old_exit_ms: Record<string, number>;
  /** Per node: when (epoch ms) the old daemon got SIGTERM. */
  sigterm_at: Record<string, number>;
  paths: Record<string, { attempted: number; failed: number; reset: number; longest_gap_ms: number; errors: Record<string, number>; failures: { at: number; ms: number; code: string }[];
    streams: { opened: number; survived: number; ended_clean: number; ended_mid_write: number; reset: number } }>;
  targets_met: { no_failed_new_connections: boolean; fastpath_streams_survive: boolean; hbone_streams_end_cleanly: boolean };
  /** The daemons' warning and error lines (at most 10). */
  log_warnings: string[];
}

export interface Usage { fds: number; rss_mb: number; heap_mb: number }

export interface SoakReport {
  conns_per_path: number;
  hold_ms: number;
  /** Open files per process (ours, the daemons', the load generator's). */
  nofile_limit: number;
  /** Per path, one after the other: per node daemon before, while held, and after close. */
  paths: Record<string, { opened: number; failed: number; closed_early: number; errors: Record<string, number>; open_ms: number;
    daemons: Record<string, { before: Usage; during: Usage; after: Usage }> }>;
  /** Per node daemon: before the first path and after the last. */
  baseline: Record<string, Usage>;
  end: Record<string, Usage>;
  tolerance: { fds: number; rss_mb: number; heap_mb: number };
  back_to_baseline: boolean;
  log_errors: number;
}

export interface ResilienceReport {
  scenario: 'resilience';
  upgrade?: UpgradeReport;
  soak?: SoakReport;
  fuzz?: FuzzReport;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs the peer in the client pod; `lines` gets each stdout line; `end()` closes its stdin. */
function peerInClient(f: Fleet, mode: 'load' | 'hold', spec: LoadSpec | HoldSpec, lines: (l: string) => void): { done: Promise<void>; end(): void } {
  const child = f.client.spawn(process.execPath, [PEER, mode, JSON.stringify(spec)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let buf = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) { lines(buf.slice(0, i)); buf = buf.slice(i + 1); }
  });
  child.stderr?.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-2000); });
  child.stdin?.on('error', () => undefined);
  const done = new Promise<void>((resolve, reject) => {
    child.once('close', (code) => { if (code === 0) resolve(); else reject(new Error(`peer ${mode} exited ${code}: ${err}`)); });
  });
  return { done, end: () => { child.stdin?.end(); } };
}

async function upgrade(o: ResilienceOptions): Promise<UpgradeReport> {
  const f = await startFleet(o.log);
  try {
    let result: LoadResult | undefined;
    // Long enough for both replacements; ended early once they are done.
    const load = peerInClient(f, 'load', { targets: f.targets, durationMs: 120_000, intervalMs: 20, streams: o.streams }, (l) => { result = JSON.parse(l) as LoadResult; });
    await sleep(1500);
    const oldExit: Record<string, number> = {};
    const sigtermAt: Record<string, number> = {};
    for (const n of f.nodes) {
      o.log(`upgrade: replacing the daemon of ${n.name} (pid ${f.pid(n)})`);
      const r = await f.replace(n);
      oldExit[n.name] = r.oldExitMs;
      sigtermAt[n.name] = r.sigtermAt;
      o.log(`upgrade: ${n.name} now pid ${f.pid(n)}; the old one exited ${oldExit[n.name]} ms after SIGTERM`);
      await sleep(1500);
    }
    load.end();
    await load.done;
    if (process.env.RESILIENCE_LOG_DUMP !== undefined) fs.writeFileSync(process.env.RESILIENCE_LOG_DUMP, f.logs());
    if (result === undefined) throw new Error('the load generator printed no result');
    const paths: UpgradeReport['paths'] = {};
    for (const [name, r] of Object.entries(result.targets)) {
      paths[name] = {
        attempted: r.conns.attempted, failed: r.conns.failed, reset: r.conns.reset, longest_gap_ms: r.conns.longestGapMs, errors: r.conns.errors, failures: r.conns.failures,
        streams: { opened: r.streams.opened, survived: r.streams.survived, ended_clean: r.streams.endedClean, ended_mid_write: r.streams.endedMidWrite, reset: r.streams.reset },
      };
    }
    const all = Object.values(paths);
    return {
      order: 'surge: new daemon started and holding the pods before SIGTERM to the old',
      drain_ms: DRAIN_MS,
      old_exit_ms: oldExit,
      sigterm_at: sigtermAt,
      paths,
      log_warnings: warnings(f).slice(0, 10),
      targets_met: {
        no_failed_new_connections: all.every((p) => p.failed === 0),
        fastpath_streams_survive: paths.fastpath !== undefined && paths.fastpath.streams.survived === o.streams,
        hbone_streams_end_cleanly: paths.hbone !== undefined && paths.hbone.streams.ended_mid_write === 0 && paths.hbone.streams.reset === 0,
      },
    };
  } finally {
    await f.teardown();
  }
}

/** Lines of the daemons' logs (JSON, at warn and above) other than the start-up and shutdown notices. */
function warnings(f: Fleet): string[] {
  return f.logs().split('\n').filter((l) => l.trim() !== '');
}

function fdCount(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Math.round(Number(m?.[1] ?? NaN) / 102.4) / 10;
}

/** V8 heap in use, from the daemon's own Prometheus endpoint (prom-client's default metrics). */
function heapMb(f: Fleet, n: LabNode): number {
  let text = '';
  try { text = f.hostOf(n).run('curl', '-sS', '--max-time', '5', 'http://127.0.0.1:15020/metrics'); } catch { /* reported as NaN */ }
  const m = /^nodejs_heap_size_used_bytes (\S+)$/m.exec(text);
  return m === null ? NaN : Math.round(Number(m[1]) / 2 ** 20 * 10) / 10;
}

function usage(f: Fleet): Record<string, Usage> {
  const out: Record<string, Usage> = {};
  for (const n of f.nodes) out[n.name] = { fds: fdCount(f.pid(n)), rss_mb: rssMb(f.pid(n)), heap_mb: heapMb(f, n) };
  return out;
}

const TOLERANCE = { fds: 10, rss_mb: 40, heap_mb: 10 };

async function soak(o: ResilienceOptions): Promise<SoakReport> {
  const f = await startFleet(o.log);
  try {
    // A little traffic first so lazily built state (certificates, pools) is in the baseline.
    await peerInClient(f, 'hold', { targets: f.targets, conns: 20, holdMs: 200 }, () => undefined).done;
    await sleep(1000);
    const baseline = usage(f);
    const paths: SoakReport['paths'] = {};
    let back = true;
    // One path at a time: each gets the whole fd budget (the load generator
    // and a relaying daemon hold one or two sockets per connection).
    for (const target of f.targets) {
      const before = usage(f);
      let during: Record<string, Usage> | undefined;
      let result: HoldResult | undefined;
      const t0 = performance.now();
      let openMs = 0;
      await peerInClient(f, 'hold', { targets: [target], conns: o.soakConns, holdMs: o.soakHoldMs }, (l) => {
        const m = JSON.parse(l) as { held: number } | HoldResult;
        if ('held' in m) {
          openMs = Math.round(performance.now() - t0);
          o.log(`soak ${target.name}: ${m.held} connections held (opened in ${openMs} ms)`);
          during = usage(f);
        } else {
          result = m;
        }
      }).done;
      // Closed connections and their HBONE streams take a moment to be reaped.
      await sleep(3000);
      const after = usage(f);
      const r = result?.targets[target.name];
      if (r === undefined || during === undefined) throw new Error(`soak ${target.name}: the load printed no result`);
      const daemons: Record<string, { before: Usage; during: Usage; after: Usage }> = {};
      for (const n of f.nodes) {
        const b = before[n.name] as Usage;
        const a = after[n.name] as Usage;
        daemons[n.name] = { before: b, during: during[n.name] as Usage, after: a };
      }
      paths[target.name] = { opened: r.opened, failed: r.failed, closed_early: r.closedEarly, errors: r.errors, open_ms: openMs, daemons };
    }
    const end = usage(f);
    for (const n of f.nodes) {
      const b = baseline[n.name] as Usage;
      const a = end[n.name] as Usage;
      if (a.fds - b.fds > TOLERANCE.fds || a.rss_mb - b.rss_mb > TOLERANCE.rss_mb || a.heap_mb - b.heap_mb > TOLERANCE.heap_mb) back = false;
    }
    const logErrors = warnings(f).filter((l) => /"level":\s*"?(error|50)/.test(l)).length;
    return {
      conns_per_path: o.soakConns,
      hold_ms: o.soakHoldMs,
      nofile_limit: nofileLimit(),
      paths,
      baseline,
      end,
      tolerance: TOLERANCE,
      back_to_baseline: back,
      log_errors: logErrors,
    };
  } finally {
    await f.teardown();
  }
}

export async function runResilience(o: ResilienceOptions): Promise<ResilienceReport> {
  const report: ResilienceReport = { scenario: 'resilience' };
  if (o.parts.includes('upgrade')) report.upgrade = await upgrade(o);
  if (o.parts.includes('soak')) report.soak = await soak(o);
  if (o.parts.includes('fuzz')) {
    const seed = 1;
    report.fuzz = fuzzReport(await runTargets(o.fuzzTargets ?? targetNames, { seconds: o.fuzzSeconds, seed, log: o.log }), seed);
  }
  return report;
}

export function resilienceTable(r: ResilienceReport): string {
  const out: string[] = ['scenario resilience'];
  if (r.upgrade !== undefined) {
    const u = r.upgrade;
    out.push('', `upgrade (${u.order}; drain ${u.drain_ms} ms; old daemons exited after ${Object.entries(u.old_exit_ms).map(([k, v]) => `${k} ${v} ms`).join(', ')})`);
    out.push(`${'path'.padEnd(12)} attempted  failed  reset  longest gap ms  streams opened/survived/clean end/mid-write/reset`);
    for (const [name, p] of Object.entries(u.paths)) {
      const s = p.streams;
      out.push(`${name.padEnd(12)} ${String(p.attempted).padStart(9)}  ${String(p.failed).padStart(6)}  ${String(p.reset).padStart(5)}  ${String(p.longest_gap_ms).padStart(14)}  ${s.opened}/${s.survived}/${s.ended_clean}/${s.ended_mid_write}/${s.reset}`);
    }
    out.push(`targets: ${Object.entries(u.targets_met).map(([k, v]) => `${k} ${v ? 'met' : 'MISSED'}`).join(', ')}`);
  }
  if (r.soak !== undefined) {
    const s = r.soak;
    const u = (x: Usage): string => `${x.fds} fds ${x.rss_mb} MB RSS ${x.heap_mb} MB heap`;
    out.push('', `soak: ${s.conns_per_path} connections per path, one path at a time, held ${s.hold_ms} ms (open files limit ${s.nofile_limit})`);
    for (const [name, p] of Object.entries(s.paths)) {
      out.push(`  ${name}: opened ${p.opened} in ${p.open_ms} ms, failed ${p.failed}${p.failed > 0 ? ` ${JSON.stringify(p.errors)}` : ''}, closed early ${p.closed_early}`);
      for (const [n, d] of Object.entries(p.daemons)) out.push(`    ${n}: before ${u(d.before)}; held ${u(d.during)}; after ${u(d.after)}`);
    }
    for (const n of Object.keys(s.baseline)) out.push(`  ${n}: baseline ${u(s.baseline[n] as Usage)}; at the end ${u(s.end[n] as Usage)}`);
    out.push(`  back to baseline (within ${s.tolerance.fds} fds, ${s.tolerance.rss_mb} MB RSS, ${s.tolerance.heap_mb} MB heap): ${s.back_to_baseline ? 'yes' : 'NO'}; error lines in the logs: ${s.log_errors}`);
  }
  if (r.fuzz !== undefined) {
    out.push('', `fuzz: ${r.fuzz.targets.length} targets, ${r.fuzz.executions} executions, ${r.fuzz.findings} findings`);
    for (const t of r.fuzz.targets) out.push(`  ${t.target.padEnd(20)} ${String(t.executions).padStart(9)} executions  ${t.crashes} crashes  ${t.hangs} hangs`);
  }
  return `${out.join('\n')}\n`;
}
