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
import type { LabPod } from '../../lab/index.ts';
import { status } from '@grpc/grpc-js';
import { DRAIN_MS, nofileLimit, PEER, SILENT_PORT, startFleet, withNofile, type Fleet } from './fleet.ts';
import { IstiodLink } from './istiod-link.ts';
import { certificateProblems, certificateSerials, configDiff, type StateDump } from './mesh-state.ts';
import type { HoldResult, HoldSpec, LoadResult, LoadSpec, Target } from './peer.ts';

export const PARTS = ['upgrade', 'faults', 'soak', 'fuzz'] as const;
export type Part = (typeof PARTS)[number];

export interface ResilienceOptions {
  parts: readonly Part[];
  /** Connections per path held by the soak. */
  soakConns: number;
  soakHoldMs: number;
  fuzzSeconds: number;
  /** How long each fault lasts. */
  faultMs: number;
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
  /** Open files the daemons may have (their soft limit, raised to the hard one at start). */
  nofile_limit: number;
  /** Per path, one after the other: per node daemon before, while held, and after close. */
  /** settle_ms: from close until every daemon was within the tolerance of its figures before this path (or gave up). */
  paths: Record<string, { opened: number; failed: number; closed_early: number; errors: Record<string, number>; open_ms: number; settle_ms: number;
    daemons: Record<string, { before: Usage; during: Usage; after: Usage }> }>;
  /** Per node daemon: before the first path and after the last. */
  baseline: Record<string, Usage>;
  end: Record<string, Usage>;
  tolerance: { fds: number; rss_mb: number; heap_mb: number };
  back_to_baseline: boolean;
  log_errors: number;
}

/** One fault: what the load saw per path, and how things stood right afterwards. */
export interface FaultReport {
  fault: string;
  fault_ms: number;
  paths: Record<string, { attempted: number; failed: number; longest_gap_ms: number; errors: Record<string, number>;
    /** The first few failures: when (epoch ms, at the attempt's start), how long it took, how it failed. */
    failures: { at: number; ms: number; code: string }[];
    /** Long-lived streams open before the fault (when the fault had any): how many were still echoing at the end. */
    streams?: { opened: number; survived: number; reset: number; ended: number } }>;
  /** From the end of the fault (restore) to the last failed attempt's end; 0 when nothing failed after it. */
  recovered_ms: number;
  /** When (epoch ms) the fault was restored. */
  restored_at: number;
  /** From the restore until every state check below first held (-1: not within the wait). */
  state_ms?: number;
  /** The checks made right afterwards, each true when the state is right. */
  state: Record<string, boolean>;
  /** What did not hold, when something did not. */
  problems?: string[];
  /** Counts that show the fault took effect (e.g. the CA's refusals). */
  counts?: Record<string, number>;
}

export interface ResilienceReport {
  scenario: 'resilience';
  upgrade?: UpgradeReport;
  faults?: FaultReport[];
  soak?: SoakReport;
  fuzz?: FuzzReport;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs the peer in the client pod; `lines` gets each stdout line; `end()` closes its stdin. */
function peerInClient(f: Fleet, mode: 'load' | 'hold', spec: LoadSpec | HoldSpec, lines: (l: string) => void): { done: Promise<void>; end(): void } {
  const [cmd, args] = withNofile(process.execPath, [PEER, mode, JSON.stringify(spec)]);
  const child = f.client.spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
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

/**
 * An HBONE pool connection unused this long is closed (ztunnel's
 * POOL_UNUSED_RELEASE_TIMEOUT, 5 min by default): shortened so the soak sees
 * the pool that 10,000 streams grew (100 streams a connection) go away too.
 */
const SOAK_POOL_RELEASE = '2s';
const SETTLE_MS = 20_000;

function within(b: Usage, a: Usage): boolean {
  return a.fds - b.fds <= TOLERANCE.fds && a.rss_mb - b.rss_mb <= TOLERANCE.rss_mb && a.heap_mb - b.heap_mb <= TOLERANCE.heap_mb;
}

async function soak(o: ResilienceOptions): Promise<SoakReport> {
  const f = await startFleet(o.log, { POOL_UNUSED_RELEASE_TIMEOUT: SOAK_POOL_RELEASE });
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
      // Closed connections, their HBONE streams and then the idle pool take a moment to go.
      const settleStart = performance.now();
      let after = usage(f);
      while (performance.now() - settleStart < SETTLE_MS && !f.nodes.every((n) => within(before[n.name] as Usage, after[n.name] as Usage))) {
        await sleep(500);
        after = usage(f);
      }
      const settleMs = Math.round(performance.now() - settleStart);
      const r = result?.targets[target.name];
      if (r === undefined || during === undefined) throw new Error(`soak ${target.name}: the load printed no result`);
      const daemons: Record<string, { before: Usage; during: Usage; after: Usage }> = {};
      for (const n of f.nodes) {
        const b = before[n.name] as Usage;
        const a = after[n.name] as Usage;
        daemons[n.name] = { before: b, during: during[n.name] as Usage, after: a };
      }
      paths[target.name] = { opened: r.opened, failed: r.failed, closed_early: r.closedEarly, errors: r.errors, open_ms: openMs, settle_ms: settleMs, daemons };
    }
    const end = usage(f);
    for (const n of f.nodes) {
      const b = baseline[n.name] as Usage;
      const a = end[n.name] as Usage;
      if (!within(b, a)) back = false;
    }
    const logErrors = warnings(f).filter((l) => /"level":\s*"?(error|50)/.test(l)).length;
    return {
      conns_per_path: o.soakConns,
      hold_ms: o.soakHoldMs,
      nofile_limit: Math.min(...f.nodes.map((n) => nofileLimit(f.pid(n)))),
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

/**
 * Runs `fault` (which resolves at its restore time) under a steady load of
 * new connections on `targets`, and `streams` long-lived ones per target
 * opened before it.
 */
async function underLoad(f: Fleet, targets: Target[], fault: () => Promise<number>, extraMs: number, streams = 0): Promise<{ load: LoadResult; restoredAt: number }> {
  let load: LoadResult | undefined;
  const gen = peerInClient(f, 'load', { targets, durationMs: 600_000, intervalMs: 20, streams }, (l) => { load = JSON.parse(l) as LoadResult; });
  await sleep(500);
  const restoredAt = await fault();
  await sleep(extraMs);
  gen.end();
  await gen.done;
  if (load === undefined) throw new Error('the load generator printed no result');
  return { load, restoredAt };
}

function faultFigures(name: string, faultMs: number, r: { load: LoadResult; restoredAt: number }, state: Record<string, boolean>): FaultReport {
  const paths: FaultReport['paths'] = {};
  let last = 0;
  for (const [k, v] of Object.entries(r.load.targets)) {
    const s = v.streams;
    paths[k] = { attempted: v.conns.attempted, failed: v.conns.failed, longest_gap_ms: v.conns.longestGapMs, errors: v.conns.errors, failures: v.conns.failures,
      ...(s.opened === 0 ? {} : { streams: { opened: s.opened, survived: s.survived, reset: s.reset, ended: s.endedClean + s.endedMidWrite } }) };
    last = Math.max(last, v.conns.lastFailureAt);
  }
  return { fault: name, fault_ms: faultMs, paths, recovered_ms: Math.max(0, last - r.restoredAt), restored_at: r.restoredAt, state };
}

/** Whether anything listens on `port` in a pod's netns (the daemon's capture listeners). */
function podListens(pod: LabPod, port: number): boolean {
  return pod.run('ss', '-Hltn', 'sport', '=', `:${port}`).trim() !== '';
}

/** A node daemon's /config_dump, from its admin port in its own netns ({} when it does not answer). */
function configDump(f: Fleet, n: LabNode): StateDump {
  try {
    return JSON.parse(f.hostOf(n).run('curl', '-sS', '--max-time', '5', 'http://127.0.0.1:15000/config_dump')) as StateDump;
  } catch {
    return {};
  }
}

/**
 * The istiod double backdates its leaves' notBefore by 60 s (test-ca.ts), and
 * a daemon renews half-way between notBefore and notAfter (ztunnel's
 * refresh_at), or half-way through what is left when that is past. A
 * control-plane fault starts just before the renewals fall due (so they fail
 * in it) with a TTL that keeps the old certificates valid for a good while
 * after it: the outage must bite without every certificate expiring (then
 * only the manager's backoff, ztunnel's, decides when a renewal succeeds).
 */
const CA_BACKDATE_S = 60;
export function faultSecretTtlS(faultMs: number): number {
  const f = Math.ceil(faultMs / 1000);
  return f < 14 ? 4 * f + 4 : 2 * f + CA_BACKDATE_S;
}
/** From a leaf's issue to its renewal, for a TTL. */
function renewAfterMs(ttlS: number): number {
  return (ttlS > CA_BACKDATE_S ? (ttlS - CA_BACKDATE_S) / 2 : ttlS / 2) * 1000;
}
/** How long before the renewals fall due a control-plane fault starts (leaves' times are whole seconds). */
const leadMs = (faultMs: number): number => Math.min(2000, faultMs / 2);

/** Resolves once every node's daemon has been issued a certificate after this call (a renewal round). */
async function afterRenewal(f: Fleet, link: IstiodLink, timeoutMs: number): Promise<void> {
  const since = link.istiod.issued.length;
  const deadline = Date.now() + timeoutMs;
  while (!f.nodes.every((n) => link.istiod.issued.slice(since).some((i) => i.caller.nodeName === n.name))) {
    if (Date.now() > deadline) throw new Error(`no certificate renewal on every node within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/**
 * Polls until the state is right after a control-plane fault, or `timeoutMs`:
 * each daemon holds exactly what istiod serves, holds only valid
 * certificates, and has renewed every certificate it held before the fault.
 */
async function untilStateRight(f: Fleet, link: IstiodLink, serialsBefore: Record<string, Record<string, string>>, timeoutMs: number): Promise<{ ms: number; state: Record<string, boolean>; problems: string[] }> {
  const t0 = Date.now();
  for (;;) {
    const state: Record<string, boolean> = {};
    const problems: string[] = [];
    for (const n of f.nodes) {
      const dump = configDump(f, n);
      const diff = configDiff(dump, link.served);
      const bad = certificateProblems(dump, link.istiod.rootPem, Date.now());
      const serials = certificateSerials(dump);
      const stale = Object.entries(serialsBefore[n.name] ?? {}).filter(([id, serial]) => serials[id] === serial).map(([id]) => `${id}: not renewed since the fault began`);
      state[`config_matches_istiod_${n.name}`] = diff.length === 0;
      state[`certificates_valid_${n.name}`] = bad.length === 0;
      state[`certificates_renewed_${n.name}`] = stale.length === 0;
      problems.push(...[...diff, ...bad, ...stale].map((p) => `${n.name}: ${p}`));
    }
    state.xds_streams_back = link.istiod.connections === f.nodes.length;
    if (!state.xds_streams_back) problems.push(`${link.istiod.connections} ADS streams open`);
    if (problems.length === 0) return { ms: Date.now() - t0, state, problems };
    if (Date.now() - t0 > timeoutMs) return { ms: -1, state, problems: problems.slice(0, 10) };
    await sleep(250);
  }
}

/** istiod (the double: xDS and CA) killed and restored; then its CA refusing while xDS stays up. */
async function controlPlaneFaults(o: ResilienceOptions): Promise<FaultReport[]> {
  const out: FaultReport[] = [];
  const ttlS = faultSecretTtlS(o.faultMs);
  const f = await startFleet(o.log, { SECRET_TTL: `${ttlS}s` }, (lab) => IstiodLink.start(lab.nodes));
  try {
    const link = f.istiod as IstiodLink;
    const node1 = { name: f.nodes[1]?.name ?? 'node1' };
    const extra = (name: string, ip4: string): Parameters<IstiodLink['publish']>[0] => ({ namespace: 'default', name, serviceAccount: 'default', ip4, node: node1 });
    // Workloads that change while istiod is away: one goes, one moves (one arrives).
    link.publish(extra('leaving', '10.244.1.60'));
    link.publish(extra('moving', '10.244.1.61'));
    const settle = Math.max(30_000, o.faultMs) + 30_000;
    const serials = (): Record<string, Record<string, string>> => Object.fromEntries(f.nodes.map((n) => [n.name, certificateSerials(configDump(f, n))]));
    const cycle = renewAfterMs(ttlS) + 5000;

    o.log(`faults: istiod killed for ${o.faultMs} ms (secret TTL ${ttlS} s)`);
    await afterRenewal(f, link, cycle);
    await sleep(renewAfterMs(ttlS) - leadMs(o.faultMs));
    let before = serials();
    let settled: Awaited<ReturnType<typeof untilStateRight>> | undefined;
    const killed = await underLoad(f, f.targets, async () => {
      await link.kill();
      await sleep(o.faultMs / 2);
      link.unpublish('Kubernetes//Pod/default/leaving');
      link.publish(extra('moving', '10.244.1.62'));
      link.publish(extra('arriving', '10.244.1.63'));
      await sleep(o.faultMs / 2);
      await link.restore();
      const at = Date.now();
      settled = await untilStateRight(f, link, before, settle);
      return at;
    }, 1000, 2);
    if (settled === undefined) throw new Error('istiod fault: no state check');
    out.push({ ...faultFigures('istiod killed (xDS and CA), restored; meanwhile a workload removed, one moved, one added', o.faultMs, killed, settled.state),
      state_ms: settled.ms, ...(settled.problems.length > 0 ? { problems: settled.problems } : {}) });

    o.log(`faults: the CA refusing for ${o.faultMs} ms`);
    await afterRenewal(f, link, cycle);
    await sleep(renewAfterMs(ttlS) - leadMs(o.faultMs));
    before = serials();
    const refusedBefore = link.istiod.log.length;
    const refused = await underLoad(f, f.targets, async () => {
      link.refuseCa(status.UNAVAILABLE);
      await sleep(o.faultMs / 2);
      link.refuseCa(status.PERMISSION_DENIED);
      await sleep(o.faultMs / 2);
      link.refuseCa(undefined);
      const at = Date.now();
      settled = await untilStateRight(f, link, before, settle);
      return at;
    }, 1000, 2);
    const refusals = link.istiod.log.slice(refusedBefore).filter((l) => l.includes('the CA is refusing'));
    out.push({ ...faultFigures('the CA refusing (UNAVAILABLE, then PERMISSION_DENIED), xDS up', o.faultMs, refused, settled.state),
      state_ms: settled.ms, ...(settled.problems.length > 0 ? { problems: settled.problems } : {}),
      counts: { refused_unavailable: refusals.filter((l) => l.includes('UNAVAILABLE')).length, refused_permission_denied: refusals.filter((l) => l.includes('PERMISSION_DENIED')).length } });
    return out;
  } finally {
    await f.teardown();
  }
}

async function faults(o: ResilienceOptions): Promise<FaultReport[]> {
  const out: FaultReport[] = await controlPlaneFaults(o);
  const f = await startFleet(o.log);
  try {
    const [n0, n1] = f.nodes as [LabNode, LabNode];
    const byName = (n: string): Target => f.targets.find((t) => t.name === n) as Target;

    // A peer node's daemon crashes; its DaemonSet starts a new one after faultMs.
    o.log('faults: the peer node\'s daemon killed');
    const killed = await underLoad(f, f.targets, async () => {
      await f.kill(n1);
      await sleep(o.faultMs);
      const at = Date.now();
      await f.restart(n1);
      return at;
    }, 1500);
    out.push(faultFigures('peer node daemon killed (SIGKILL), restarted', o.faultMs, killed, {
      far_pod_listeners_back: podListens(f.pods.far, 15008),
      same_node_paths_unaffected: (killed.load.targets.fastpath?.conns.failed ?? 1) === 0 && (killed.load.targets.passthrough?.conns.failed ?? 1) === 0,
    }));

    // istio-cni restarts and, while away, a pod went: the snapshot it replays no longer has it.
    o.log('faults: ZDS server restarted with a changed snapshot');
    const zds = await underLoad(f, [byName('hbone'), byName('passthrough')], async () => {
      const cni = f.cni(n0);
      cni.zds.dropConnections();
      await f.cni(n0).unenroll(f.pods.same);
      await sleep(o.faultMs);
      const at = Date.now();
      const deadline = Date.now() + 20_000;
      while (podListens(f.pods.same, 15008) && Date.now() < deadline) await sleep(50);
      return at;
    }, 1000);
    const dropped = !podListens(f.pods.same, 15008);
    // The pod comes back, for the fast-path traffic below.
    await f.cni(n0).enroll(f.pods.same);
    out.push(faultFigures('ZDS server restarted; the snapshot drops a pod', o.faultMs, zds, {
      dropped_pod_released: dropped,
      other_pods_kept: podListens(f.pods.client, 15001),
      daemon_reconnected: f.cni(n0).zds.readyConnections === 1,
    }));

    // An upstream that accepts and never answers: connections stay open, cost what they hold, and go when the client gives up.
    o.log('faults: upstreams that accept and never answer');
    const before = { n0: fdCount(f.pid(n0)), n1: fdCount(f.pid(n1)) };
    const silent = underLoad(f, [byName('fastpath')], async () => {
      const silentTargets = [{ name: 'hbone-silent', host: f.pods.far.ip4, port: SILENT_PORT }, { name: 'passthrough-silent', host: f.pods.outside.ip4, port: SILENT_PORT }];
      await peerInClient(f, 'hold', { targets: silentTargets, conns: 50, holdMs: o.faultMs, prove: false }, () => undefined).done;
      return Date.now();
    }, 2000);
    const hung = await silent;
    const settle = Date.now() + 5000;
    while (Date.now() < settle && (fdCount(f.pid(n0)) - before.n0 > TOLERANCE.fds || fdCount(f.pid(n1)) - before.n1 > TOLERANCE.fds)) await sleep(100);
    out.push(faultFigures('upstreams accept and never answer (50 connections each, HBONE and passthrough)', o.faultMs, hung, {
      fds_released_node0: fdCount(f.pid(n0)) - before.n0 <= TOLERANCE.fds,
      fds_released_node1: fdCount(f.pid(n1)) - before.n1 <= TOLERANCE.fds,
    }));
    return out;
  } finally {
    await f.teardown();
  }
}

export async function runResilience(o: ResilienceOptions): Promise<ResilienceReport> {
  const report: ResilienceReport = { scenario: 'resilience' };
  if (o.parts.includes('upgrade')) report.upgrade = await upgrade(o);
  if (o.parts.includes('faults')) report.faults = await faults(o);
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
  if (r.faults !== undefined) {
    out.push('', 'faults');
    for (const x of r.faults) {
      out.push(`  ${x.fault} (${x.fault_ms} ms): recovered ${x.recovered_ms} ms after the restore${x.state_ms === undefined ? '' : `; state right ${x.state_ms} ms after it`}`);
      out.push(`    ${Object.entries(x.paths).map(([k, p]) => `${k} ${p.failed}/${p.attempted} failed${p.failed > 0 ? ` ${JSON.stringify(p.errors)}` : ''}, gap ${p.longest_gap_ms} ms${p.streams === undefined ? '' : `, streams survived ${p.streams.survived} ended ${p.streams.ended} reset ${p.streams.reset}`}`).join('; ')}`);
      out.push(`    afterwards: ${Object.entries(x.state).map(([k, v]) => `${k} ${v ? 'yes' : 'NO'}`).join(', ')}`);
      if (x.counts !== undefined) out.push(`    ${Object.entries(x.counts).map(([k, v]) => `${k} ${v}`).join(', ')}`);
      for (const p of x.problems ?? []) out.push(`    problem: ${p}`);
    }
  }
  if (r.soak !== undefined) {
    const s = r.soak;
    const u = (x: Usage): string => `${x.fds} fds ${x.rss_mb} MB RSS ${x.heap_mb} MB heap`;
    out.push('', `soak: ${s.conns_per_path} connections per path, one path at a time, held ${s.hold_ms} ms (open files limit ${s.nofile_limit})`);
    for (const [name, p] of Object.entries(s.paths)) {
      out.push(`  ${name}: opened ${p.opened} in ${p.open_ms} ms, failed ${p.failed}${p.failed > 0 ? ` ${JSON.stringify(p.errors)}` : ''}, closed early ${p.closed_early}; settled ${p.settle_ms} ms after close`);
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
