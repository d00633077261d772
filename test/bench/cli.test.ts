// SPDX-License-Identifier: Apache-2.0
// The bench CLI's contract: its arguments, and the JSON report's exact shape
// (other tools read it), built from a made-up result without a lab.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseBenchArgs, UsageError } from './args.ts';
import { toReport, toTable } from './report.ts';
import type { RepFigures, ScenarioResult } from './run.ts';

const known = ['reference', 'hbone'];

test('arguments: defaults, a scenario word, and flags in either form', () => {
  assert.deepEqual(parseBenchArgs([], known), { scenario: 'reference', json: false, reps: 3, durationS: 2, help: false });
  assert.deepEqual(parseBenchArgs(['hbone', '--json', '--reps', '5', '--duration=1'], known), { scenario: 'hbone', json: true, reps: 5, durationS: 1, help: false });
});

test('arguments: a subset of paths and Node.js flags for the Skein daemons', () => {
  assert.deepEqual(parseBenchArgs(['hbone', '--paths', 'skein-hbone, haproxy-tls', '--node-arg=--cpu-prof', '--node-arg=--cpu-prof-dir=/tmp/p'], known), {
    scenario: 'hbone', json: false, reps: 3, durationS: 2, paths: ['skein-hbone', 'haproxy-tls'], nodeArgs: ['--cpu-prof', '--cpu-prof-dir=/tmp/p'], help: false,
  });
});

test('arguments: unknown scenarios and flags and bad counts are usage errors', () => {
  for (const argv of [['nope'], ['--jsno'], ['--reps', '0'], ['--reps', '2.5'], ['--duration', '61'], ['--duration'], ['reference', 'hbone'],
    ['--paths', 'a,,b'], ['--paths='], ['--node-arg=cpu-prof'], ['--node-arg']]) {
    assert.throws(() => parseBenchArgs(argv, known), UsageError, argv.join(' '));
  }
});

const rep = (scale: number, proxies: Record<string, number>): RepFigures => ({
  p50MsC1: 0.1 * scale,
  p99MsC1: 0.2 * scale,
  p50Ms: 0.5 * scale,
  p99Ms: 1 * scale,
  rps: 10000 / scale,
  rpsNewConn: 1000 / scale,
  gbps: 10 / scale,
  cpuPct: Object.fromEntries(Object.entries(proxies).map(([k, v]) => [k, v * scale])),
  rssMb: Object.fromEntries(Object.keys(proxies).map((k) => [k, 20])),
});

const result: ScenarioResult = {
  scenario: 'reference',
  description: 'test',
  client: 'pod0-0 (node0)',
  server: 'pod1-0 (node1)',
  reps: 3,
  durationS: 2,
  paths: [
    { path: 'no-mesh', description: 'direct', reps: [rep(1, {}), rep(3, {}), rep(2, {})] },
    { path: 'haproxy-tls', description: 'two haproxies', reps: [rep(2, { 'haproxy-node0': 40 }), rep(1, { 'haproxy-node0': 40 }), rep(4, { 'haproxy-node0': 40 })] },
  ],
};

test('the JSON report: required keys by name, medians at the top, min and max beside', () => {
  const report = toReport(result);
  assert.deepEqual(Object.keys(report), ['scenario', 'reps', 'duration_s', 'paths']);
  const [direct, proxied] = report.paths;
  assert.ok(direct && proxied);
  assert.deepEqual(Object.keys(direct), ['path', 'p50_ms', 'p99_ms', 'p50_ms_c1', 'p99_ms_c1', 'rps', 'rps_new_conn', 'gbps', 'cpu_pct', 'rss_mb', 'min', 'max']);
  assert.equal(direct.path, 'no-mesh');
  assert.deepEqual(direct.cpu_pct, {}, 'no proxy processes: empty objects');
  assert.deepEqual(direct.rss_mb, {});
  assert.equal(direct.p50_ms, 1);
  assert.equal(direct.min.p50_ms, 0.5);
  assert.equal(direct.max.p99_ms, 3);
  assert.equal(proxied.rps, 5000);
  assert.equal(proxied.rps_new_conn, 500);
  assert.equal(proxied.gbps, 5);
  assert.deepEqual(proxied.cpu_pct, { 'haproxy-node0': 80 });
  assert.deepEqual(proxied.max.cpu_pct, { 'haproxy-node0': 160 });
  assert.deepEqual(proxied.rss_mb, { 'haproxy-node0': 20 });
  assert.deepEqual(JSON.parse(JSON.stringify(report)), report, 'plain JSON, nothing lost');
});

test('the table: one column per path, a row per figure and per proxy process', () => {
  const table = toTable(result);
  assert.match(table, /^\s+no-mesh\s+haproxy-tls$/m);
  assert.match(table, /^latency p50, 16 conn \(ms\)\s+1\.000 \(0\.500–1\.500\)\s+1\.000 \(0\.500–2\.000\)$/m);
  assert.match(table, /^CPU % haproxy-node0\s+–\s+80\.0 \(40\.0–160\.0\)$/m);
});
