// SPDX-License-Identifier: Apache-2.0
// Smoke test of `npm run bench`: the reference scenario with the shortest
// runs (1 repetition, 1 s per load) yields real figures for both paths, and
// leaves no namespace or process of its lab behind.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import type { Lab } from '../lab/index.ts';
import { listNetns } from '../lab/sh.ts';
import { toReport } from './report.ts';
import { runScenario } from './run.ts';
import { reference } from './scenarios/reference.ts';

const needsRoot = process.getuid?.() === 0 ? false : 'needs root (the lab builds network namespaces)';

test('the reference scenario measures no-mesh and haproxy-tls and tears its lab down', { skip: needsRoot, timeout: 60_000 }, async () => {
  let lab: Lab | undefined;
  const result = await runScenario(reference, { reps: 1, durationS: 1, warmupS: 0, log: () => undefined, onLab: (l) => { lab = l; } });
  const report = toReport(result);
  assert.equal(report.scenario, 'reference');
  assert.deepEqual(report.paths.map((p) => p.path), ['no-mesh', 'haproxy-tls']);
  for (const p of report.paths) {
    assert.ok(p.rps > 0 && p.gbps > 0, `${p.path}: rps ${p.rps}, gbps ${p.gbps}`);
    assert.ok(p.p50_ms > 0 && p.p99_ms >= p.p50_ms, `${p.path}: c16 p50 ${p.p50_ms}, p99 ${p.p99_ms}`);
    assert.ok(p.p50_ms_c1 > 0 && p.p99_ms_c1 >= p.p50_ms_c1, `${p.path}: c1 p50 ${p.p50_ms_c1}, p99 ${p.p99_ms_c1}`);
  }
  const [direct, proxied] = report.paths;
  assert.deepEqual(direct?.cpu_pct, {});
  assert.deepEqual(Object.keys(proxied?.cpu_pct ?? {}), ['haproxy-node0', 'haproxy-node1']);
  for (const name of ['haproxy-node0', 'haproxy-node1']) {
    assert.ok((proxied?.cpu_pct[name] ?? 0) > 0, `${name} used CPU under load`);
    assert.ok((proxied?.rss_mb[name] ?? 0) > 0, `${name} has an RSS`);
  }

  assert.ok(lab !== undefined);
  const left = listNetns();
  assert.deepEqual(lab.netnsNames.filter((n) => left.includes(n)), [], 'no namespace of the run is left');
  assert.equal(fs.existsSync(lab.dir), false);
  const stray = fs.readdirSync('/proc').filter((pid) => {
    try { return /^\d+$/.test(pid) && fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(lab?.dir ?? '\0'); } catch { return false; }
  });
  assert.deepEqual(stray, [], 'no process started with the run directory (haproxy, nginx) is left');
});
