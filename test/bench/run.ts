// SPDX-License-Identifier: Apache-2.0
// Runs a scenario: builds its lab and servers, sets up every path, then
// measures the paths in turn, repetition by repetition (interleaved, so a
// slow minute of the machine hits every path alike), and tears it all down.
import { Lab } from '../lab/index.ts';
import { runIperf } from './measure/iperf.ts';
import { sampleDuring } from './measure/proc.ts';
import { runWrk } from './measure/wrk.ts';
import { hostPort, type ActivePath, type BenchEnv, type Scenario } from './scenario.ts';
import { startServers, type Servers } from './servers.ts';

export interface RunOptions {
  reps: number;
  /** Seconds per load run (c1, c16, c16 with new connections and bulk each); whole seconds for iperf3. */
  durationS: number;
  /** Seconds of c16 load per path before the first repetition (0: none). */
  warmupS: number;
  /** Progress lines; the runner never writes to stdout. */
  log: (line: string) => void;
  /** Called with the lab as soon as it exists (tests use it to check teardown). */
  onLab?: (lab: Lab) => void;
  /** Extra Node.js flags for the Skein daemons. */
  nodeArgs?: readonly string[];
}

/** One repetition's figures for one path. */
export interface RepFigures {
  p50MsC1: number;
  p99MsC1: number;
  p50Ms: number;
  p99Ms: number;
  /** Requests/s at 16 connections. */
  rps: number;
  /** Requests/s at 16 connections, each request on a new connection. */
  rpsNewConn: number;
  gbps: number;
  /** Per proxy process: share of one core during the 16-connection run. */
  cpuPct: Record<string, number>;
  /** Per proxy process: peak RSS over the 16-connection and bulk runs. */
  rssMb: Record<string, number>;
}

export interface PathResult {
  path: string;
  description: string;
  reps: RepFigures[];
}

export interface ScenarioResult {
  scenario: string;
  description: string;
  client: string;
  server: string;
  reps: number;
  durationS: number;
  paths: PathResult[];
}

const C_LOW = 1;
const C_HIGH = 16;

export async function runScenario(scenario: Scenario, opts: RunOptions): Promise<ScenarioResult> {
  const { log } = opts;
  const lab = Lab.create(scenario.lab);
  opts.onLab?.(lab);
  const cleanups: (() => Promise<void>)[] = [];
  try {
    const { client, server } = scenario.roles(lab);
    log(`${scenario.name}: lab ${lab.plan.runId} up; client ${client.name} (${client.node.name}) → server ${server.name} (${server.node.name})`);
    const servers: Servers = await startServers(server, lab.dir);
    cleanups.push(servers.stop);
    const env: BenchEnv = { lab, client, server: { pod: server, ...servers.targets }, nodeArgs: opts.nodeArgs ?? [] };
    if (scenario.prepare !== undefined) cleanups.push(await scenario.prepare(env));

    // One path at a time: a path may change the pods themselves (Skein's
    // enrollment installs istio-cni's capture rules in the client pod), so
    // it is set up just before its measurement and torn down right after.
    // Repetitions alternate between paths, so a slow spell of the machine
    // hits all of them alike.
    const results = scenario.paths.map((path): PathResult => ({ path: path.name, description: path.description, reps: [] }));
    for (let rep = 1; rep <= opts.reps; rep++) {
      for (const [i, path] of scenario.paths.entries()) {
        log(`${path.name}: setting up`);
        const on = await path.setup(env);
        try {
          await probe(env, path.name, on);
          if (opts.warmupS > 0) await runWrk(client, { url: url(on), connections: C_HIGH, durationS: opts.warmupS });
          const f = await measure(env, on, opts.durationS);
          results[i]?.reps.push(f);
          log(`[rep ${rep}/${opts.reps}] ${path.name}: c1 p50 ${f.p50MsC1.toFixed(3)} ms, c16 p99 ${f.p99Ms.toFixed(3)} ms, ${Math.round(f.rps)} req/s (${Math.round(f.rpsNewConn)} on new connections), ${f.gbps.toFixed(2)} Gbit/s`);
        } finally {
          await on.teardown();
        }
      }
    }
    return {
      scenario: scenario.name,
      description: scenario.description,
      client: `${client.name} (${client.node.name})`,
      server: `${server.name} (${server.node.name})`,
      reps: opts.reps,
      durationS: opts.durationS,
      paths: results,
    };
  } finally {
    // Orderly stops first (reverse order of set-up); the lab then kills
    // whatever is left by PID and removes its namespaces either way.
    for (const c of cleanups.reverse()) {
      try { await c(); } catch (e) { log(`cleanup: ${(e as Error).message}`); }
    }
    lab.teardown();
    log(`${scenario.name}: lab ${lab.plan.runId} torn down`);
  }
}

const url = (on: ActivePath): string => `http://${hostPort(on.targets.http)}/`;

/** One request through the path before any load, so a broken path fails with a clear message. */
async function probe(env: BenchEnv, name: string, on: ActivePath): Promise<void> {
  const r = await env.client.exec('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', url(on)], { timeoutMs: 10_000 });
  if (r.stdout !== '200') throw new Error(`${name}: probe GET ${url(on)} from ${env.client.name} failed: ${r.stderr.trim() || `HTTP ${r.stdout}`}`);
}

async function measure(env: BenchEnv, on: ActivePath, durationS: number): Promise<RepFigures> {
  const c1 = await runWrk(env.client, { url: url(on), connections: C_LOW, durationS });
  const [c16, load16] = await sampleDuring(on.proxies, () => runWrk(env.client, { url: url(on), connections: C_HIGH, durationS }));
  const [gbps, loadBulk] = await sampleDuring(on.proxies, () => runIperf(env.client, { ...on.targets.bulk, durationS }));
  // Last, so the memory a burst of connections leaves behind is not in the RSS above.
  const churn = await runWrk(env.client, { url: url(on), connections: C_HIGH, durationS, newConnections: true });
  const cpuPct: Record<string, number> = {};
  const rssMb: Record<string, number> = {};
  for (const p of on.proxies) {
    cpuPct[p.name] = load16[p.name]?.cpuPct ?? NaN;
    rssMb[p.name] = Math.max(load16[p.name]?.rssMb ?? NaN, loadBulk[p.name]?.rssMb ?? NaN);
  }
  return { p50MsC1: c1.p50Ms, p99MsC1: c1.p99Ms, p50Ms: c16.p50Ms, p99Ms: c16.p99Ms, rps: c16.rps, rpsNewConn: churn.rps, gbps, cpuPct, rssMb };
}
