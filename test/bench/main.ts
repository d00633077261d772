// SPDX-License-Identifier: Apache-2.0
// `npm run bench -- [scenario] [--json] [--reps N] [--duration S] ...`: runs a
// scenario on a fresh lab and prints a table, or with --json exactly one JSON
// object on stdout. Progress and errors go to stderr. Exit 2 on bad usage.
import { parseBenchArgs, usage, UsageError, type BenchArgs } from './args.ts';
import { toReport, toTable } from './report.ts';
import { runScenario } from './run.ts';
import { findScenario, scenarios } from './scenarios/index.ts';
import { dnsTable, runDnsBench } from './dns/run.ts';
import { runXdsBench, xdsTable } from './xds/run.ts';
import { kmodTable, runKmodBench } from './kmod/run.ts';
import { PARTS, resilienceTable, runResilience, type Part } from './resilience/run.ts';
import { DEFAULT_SOAK } from './args.ts';

// `xds` measures the control-plane client and needs no lab; `dns` runs its
// own; `kmod` runs in the VM lab (test/vm).
const names = [...scenarios.map((s) => s.name), 'xds', 'dns', 'kmod', 'resilience'];
const log = (line: string): void => { process.stderr.write(`bench: ${line}\n`); };

let args: BenchArgs;
try {
  args = parseBenchArgs(process.argv.slice(2), names);
} catch (e) {
  if (!(e instanceof UsageError)) throw e;
  process.stderr.write(`bench: ${e.message}\n${usage(names)}`);
  process.exit(2);
}
if (args.help) {
  process.stdout.write(usage(names));
  process.exit(0);
}
if ((args.scenario === 'xds' || args.scenario === 'dns' || args.scenario === 'kmod') && (args.paths !== undefined || args.nodeArgs !== undefined)) {
  process.stderr.write(`bench: --paths and --node-arg apply to the lab scenarios, not to ${args.scenario}\n${usage(names)}`);
  process.exit(2);
}
if (args.scenario === 'xds') {
  const report = await runXdsBench({ reps: args.reps, size: { workloads: 10_000, services: 2_000, policies: 1_000 }, updates: 100, log });
  process.stdout.write(args.json ? `${JSON.stringify(report)}\n` : xdsTable(report));
  process.exit(0);
}
if (args.scenario === 'dns') {
  if (process.getuid?.() !== 0) {
    log('needs root: the lab creates network namespaces and cgroups');
    process.exit(1);
  }
  const report = await runDnsBench({ reps: args.reps, durationS: args.durationS, log });
  process.stdout.write(args.json ? `${JSON.stringify(report)}\n` : dnsTable(report));
  process.exit(0);
}
if (args.scenario === 'kmod') {
  // 16 MiB each way per run: a few seconds per path under emulation.
  const report = await runKmodBench({ reps: args.reps, bytes: 16 * 2 ** 20, log });
  process.stdout.write(args.json ? `${JSON.stringify(report)}\n` : kmodTable(report));
  process.exit(0);
}
if (args.scenario === 'resilience') {
  const parts = args.parts ?? [...PARTS];
  const bad = parts.find((p) => !(PARTS as readonly string[]).includes(p));
  if (bad !== undefined) {
    process.stderr.write(`bench: resilience has no part '${bad}' (its parts: ${PARTS.join(', ')})\n`);
    process.exit(2);
  }
  if (process.getuid?.() !== 0) {
    log('needs root: the lab creates network namespaces and cgroups');
    process.exit(1);
  }
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => { process.exit(sig === 'SIGINT' ? 130 : 143); });
  // --duration is the soak's hold; each fuzz target gets five times that.
  const report = await runResilience({ parts: parts as Part[], soakConns: args.soakConns ?? DEFAULT_SOAK, soakHoldMs: args.durationS * 1000, fuzzSeconds: args.durationS * 5, faultMs: (args.faultS ?? 60) * 1000, streams: 4, log });
  process.stdout.write(args.json ? `${JSON.stringify(report)}\n` : resilienceTable(report));
  process.exit(0);
}
const found = findScenario(args.scenario);
if (found === undefined) throw new Error(`unreachable: '${args.scenario}' was validated`);
const wanted = args.paths;
const unknownPath = wanted?.find((p) => !found.paths.some((x) => x.name === p));
if (unknownPath !== undefined) {
  process.stderr.write(`bench: ${args.scenario} has no path '${unknownPath}' (its paths: ${found.paths.map((p) => p.name).join(', ')})\n`);
  process.exit(2);
}
const scenario = wanted === undefined ? found : { ...found, paths: found.paths.filter((p) => wanted.includes(p.name)) };
if (process.getuid?.() !== 0) {
  log('needs root: the lab creates network namespaces and cgroups');
  process.exit(1);
}
// On Ctrl-C exit through process.exit, whose 'exit' event makes the lab tear
// itself down (kill its processes by PID, delete its namespaces).
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log(`${sig}: tearing the lab down`);
    process.exit(sig === 'SIGINT' ? 130 : 143);
  });
}

const t0 = performance.now();
let code = 0;
try {
  const result = await runScenario(scenario, { reps: args.reps, durationS: args.durationS, warmupS: 1, log, nodeArgs: args.nodeArgs ?? [] });
  process.stdout.write(args.json ? `${JSON.stringify(toReport(result))}\n` : toTable(result));
  log(`done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
} catch (e) {
  log(`failed: ${(e as Error).stack ?? String(e)}`);
  code = 1;
}
// The lab is down by now; exit even if some handle of a failed run lingers
// (stdout to a pipe or file is written synchronously on Linux, nothing is lost).
process.exit(code);
