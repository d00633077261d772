// SPDX-License-Identifier: Apache-2.0
// A scenario's result as the report the issue specifies: one JSON object of
// medians over the repetitions (with min and max beside them), or a table
// for people. Both are pure functions of the result.
import { spread, type Spread } from './measure/stats.ts';
import type { PathResult, RepFigures, ScenarioResult } from './run.ts';

/** One path's figures under the report's key names. */
export interface PathFigures {
  p50_ms: number;
  p99_ms: number;
  p50_ms_c1: number;
  p99_ms_c1: number;
  rps: number;
  rps_new_conn: number;
  gbps: number;
  cpu_pct: Record<string, number>;
  rss_mb: Record<string, number>;
}

export interface BenchReport {
  scenario: string;
  reps: number;
  duration_s: number;
  paths: ({ path: string } & PathFigures & { min: PathFigures; max: PathFigures })[];
}

type Pick3 = keyof Spread;

/** Decimals per figure: µs for latency, whole requests, 10 Mbit/s, 0.1 % and 0.1 MB. */
const round = (v: number, decimals: number): number => Number(v.toFixed(decimals));

function figures(reps: readonly RepFigures[], which: Pick3): PathFigures {
  const s = (get: (r: RepFigures) => number, decimals: number): number => round(spread(reps.map(get))[which], decimals);
  const perProcess = (get: (r: RepFigures) => Record<string, number>, decimals: number): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const name of Object.keys(reps[0] === undefined ? {} : get(reps[0]))) out[name] = s((r) => get(r)[name] ?? NaN, decimals);
    return out;
  };
  return {
    p50_ms: s((r) => r.p50Ms, 3),
    p99_ms: s((r) => r.p99Ms, 3),
    p50_ms_c1: s((r) => r.p50MsC1, 3),
    p99_ms_c1: s((r) => r.p99MsC1, 3),
    rps: s((r) => r.rps, 0),
    rps_new_conn: s((r) => r.rpsNewConn, 0),
    gbps: s((r) => r.gbps, 2),
    cpu_pct: perProcess((r) => r.cpuPct, 1),
    rss_mb: perProcess((r) => r.rssMb, 1),
  };
}

export function toReport(r: ScenarioResult): BenchReport {
  return {
    scenario: r.scenario,
    reps: r.reps,
    duration_s: r.durationS,
    paths: r.paths.map((p) => ({ path: p.path, ...figures(p.reps, 'median'), min: figures(p.reps, 'min'), max: figures(p.reps, 'max') })),
  };
}

interface Row {
  label: string;
  cell(p: PathResult): string;
}

function cell(values: number[], decimals: number): string {
  if (values.length === 0 || values.some((v) => !Number.isFinite(v))) return '–';
  const { min, median, max } = spread(values);
  const f = (v: number): string => v.toFixed(decimals);
  return values.length === 1 ? f(median) : `${f(median)} (${f(min)}–${f(max)})`;
}

/** Rows are figures, columns are paths: later scenarios add columns, not width per cell. */
export function toTable(r: ScenarioResult): string {
  const metric = (label: string, get: (f: RepFigures) => number, decimals: number): Row =>
    ({ label, cell: (p) => cell(p.reps.map(get), decimals) });
  const processes = [...new Set(r.paths.flatMap((p) => Object.keys(p.reps[0]?.cpuPct ?? {})))];
  const rows: Row[] = [
    metric('latency p50, 1 conn (ms)', (f) => f.p50MsC1, 3),
    metric('latency p99, 1 conn (ms)', (f) => f.p99MsC1, 3),
    metric('latency p50, 16 conn (ms)', (f) => f.p50Ms, 3),
    metric('latency p99, 16 conn (ms)', (f) => f.p99Ms, 3),
    metric('requests/s, 16 conn', (f) => f.rps, 0),
    metric('requests/s, 16 conn, new conn each', (f) => f.rpsNewConn, 0),
    metric('bulk, 1 stream (Gbit/s)', (f) => f.gbps, 2),
    ...processes.flatMap((name) => [
      { label: `CPU % ${name}`, cell: (p: PathResult) => cell(p.reps.flatMap((f) => f.cpuPct[name] ?? []), 1) },
      { label: `RSS MB ${name}`, cell: (p: PathResult) => cell(p.reps.flatMap((f) => f.rssMb[name] ?? []), 1) },
    ]),
  ];
  const grid = [['', ...r.paths.map((p) => p.path)], ...rows.map((row) => [row.label, ...r.paths.map((p) => row.cell(p))])];
  const widths = (grid[0] ?? []).map((_, i) => Math.max(...grid.map((line) => (line[i] ?? '').length)));
  const lines = grid.map((line) => line.map((c, i) => c.padEnd(widths[i] ?? 0)).join('   ').trimEnd());
  const spreadNote = r.reps > 1 ? `median (min–max) of ${r.reps} repetitions` : '1 repetition';
  return [
    `scenario ${r.scenario}: ${r.description}`,
    `client ${r.client} → server ${r.server}; ${r.durationS} s per load run; ${spreadNote}`,
    '',
    ...lines,
    '',
    ...r.paths.map((p) => `  ${p.path}: ${p.description}`),
    '  CPU % is the share of one core during the 16-connection run; RSS is the peak over the 16-connection and bulk runs.',
    '',
  ].join('\n');
}
