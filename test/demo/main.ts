// SPDX-License-Identifier: Apache-2.0
// `npm run demo [-- --json] [-- --keep]`: the README's main job. Builds a
// two-node lab, runs `skein proxy` on each node in static mode, sends traffic
// along every path that exists and prints what happened. Progress goes to
// stderr; stdout carries only the summary (or, with --json, one JSON object).
// Everything it creates is removed at the end, also on Ctrl-C.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCluster, type Cluster } from './cluster.ts';
import { readMachine, refusals } from './preflight.ts';
import { PROBES } from './probes.ts';
import { allOk, toJson, toText, type DemoReport } from './report.ts';

const usage = `Usage: npm run demo [-- --json] [-- --keep]
  --json   print the summary as one JSON object
  --keep   keep the lab and the daemons up after the summary until Ctrl-C
`;
const args = process.argv.slice(2);
const unknown = args.filter((a) => !['--json', '--keep', '--help', '-h'].includes(a));
if (args.includes('--help') || args.includes('-h') || unknown.length > 0) {
  if (unknown.length > 0) process.stderr.write(`demo: unknown argument '${unknown[0] ?? ''}'\n`);
  (unknown.length > 0 ? process.stderr : process.stdout).write(usage);
  process.exit(unknown.length > 0 ? 2 : 0);
}
const json = args.includes('--json');
const keep = args.includes('--keep');
const log = (line: string): void => { process.stderr.write(`demo: ${line}\n`); };

const refused = refusals(readMachine());
if (refused.length > 0) {
  for (const r of refused) log(r);
  process.exit(1);
}

const outDir = path.join(fileURLToPath(new URL('../../.skein/demo', import.meta.url)));
let cluster: Cluster | undefined;
// On Ctrl-C, exit through process.exit: the lab's 'exit' hook kills what it
// started (by PID) and deletes its namespaces.
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log(`${sig}: cleaning up`);
    process.exit(sig === 'SIGINT' ? 130 : 143);
  });
}

/** What each node's daemon shows on its admin and stats ports, kept after the lab is gone. */
async function snapshot(c: Cluster): Promise<string[]> {
  fs.rmSync(outDir, { recursive: true, force: true });
  fs.mkdirSync(outDir, { recursive: true });
  const files: string[] = [];
  for (const n of c.nodes) {
    for (const [what, url] of [['config_dump.json', 'http://127.0.0.1:15000/config_dump'], ['metrics.txt', 'http://127.0.0.1:15020/metrics']] as const) {
      // Loopback of the node's own netns: the daemon's admin ports, as on a real node.
      const r = await n.exec('curl', ['-sS', '-m', '5', url], { timeoutMs: 10_000 });
      const file = path.join(outDir, `${n.name}.${what}`);
      fs.writeFileSync(file, r.stdout);
      files.push(file);
    }
    const logFile = path.join(outDir, `${n.name}.skein.log`);
    fs.copyFileSync(c.logOf(n), logFile);
    files.push(logFile);
  }
  return files;
}

let code = 0;
try {
  const t0 = performance.now();
  log('building a two-node lab (network namespaces, istio-cni\'s in-pod rules)');
  cluster = await startCluster(log);
  const paths = [];
  for (const probe of PROBES) {
    const r = await probe(cluster);
    const outcome = r.ok ? 'ok' : r.failure === undefined ? 'FAILED' : `FAILED: ${r.failure}`;
    log(`${r.path}: ${r.taken ? 'taken' : 'not taken'}, ${outcome}`);
    paths.push(r);
  }
  const files = await snapshot(cluster);
  const rel = (f: string): string => path.relative(process.cwd(), f);
  const nodeNs = cluster.nodes.map((n) => `${n.name}=${n.netns}`).join(', ');
  const report: DemoReport = {
    paths,
    pending: ['double HBONE (multi-network)'],
    look: [
      `config_dump, metrics and logs of each node's daemon as the demo ended: ${rel(outDir)}/ (${files.length} files)`,
      `  e.g. jq '.workloads | length' ${rel(path.join(outDir, 'node0.config_dump.json'))}; grep istio_tcp_connections_opened_total ${rel(path.join(outDir, 'node1.metrics.txt'))}`,
      keep
        ? `live, until Ctrl-C: ip netns exec <node netns> curl -s 127.0.0.1:15000/config_dump (node netns: ${nodeNs}); metrics on :15020/metrics`
        : 'live: npm run demo -- --keep, then ip netns exec <node netns> curl -s 127.0.0.1:15000/config_dump (and :15020/metrics)',
    ],
  };
  process.stdout.write(json ? toJson(report) : toText(report));
  log(`done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  code = allOk(report) ? 0 : 1;
  if (keep) {
    log('--keep: the lab stays up; Ctrl-C to clean up');
    await new Promise(() => undefined);
  }
} catch (e) {
  log(`failed: ${(e as Error).stack ?? String(e)}`);
  code = 1;
} finally {
  await cluster?.teardown().catch((e: unknown) => { log(`teardown: ${(e as Error).message}`); code = 1; });
}
process.exit(code);
