// SPDX-License-Identifier: Apache-2.0
// The fuzz report: one row per target, plus totals; findings carry their
// input as base64 so a JSON report alone reproduces them.
import type { FuzzStats } from './engine.ts';

export interface FuzzRow {
  target: string;
  parser: string;
  executions: number;
  seconds: number;
  execsPerSecond: number;
  crashes: number;
  hangs: number;
  seeds: number;
  corpus: number;
  newCoverage: number;
  features: number;
  findings: { kind: string; message: string; atExecution: number; inputBase64: string }[];
}

export interface FuzzReport {
  seed: number;
  targets: FuzzRow[];
  executions: number;
  findings: number;
}

export function fuzzReport(stats: readonly FuzzStats[], seed: number): FuzzReport {
  const targets = stats.map((s): FuzzRow => ({
    target: s.target,
    parser: s.parser,
    executions: s.executions,
    seconds: Math.round(s.seconds * 10) / 10,
    execsPerSecond: s.seconds > 0 ? Math.round(s.executions / s.seconds) : 0,
    crashes: s.findings.filter((f) => f.kind === 'crash').length,
    hangs: s.findings.filter((f) => f.kind === 'hang').length,
    seeds: s.seeds,
    corpus: s.corpus,
    newCoverage: s.newCoverage,
    features: s.features,
    findings: s.findings.map((f) => ({ kind: f.kind, message: f.message, atExecution: f.atExecution, inputBase64: f.input.toString('base64') })),
  }));
  return { seed, targets, executions: targets.reduce((n, t) => n + t.executions, 0), findings: targets.reduce((n, t) => n + t.findings.length, 0) };
}

export function fuzzTable(r: FuzzReport): string {
  const head = ['target', 'executions', 'exec/s', 'crashes', 'hangs', 'corpus', 'new coverage', 'features'];
  const rows = r.targets.map((t) => [t.target, String(t.executions), String(t.execsPerSecond), String(t.crashes), String(t.hangs), String(t.corpus), String(t.newCoverage), String(t.features)]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  const findings = r.targets.flatMap((t) => t.findings.map((f) => `  ${t.target}: ${f.kind}: ${f.message}\n    input (base64): ${f.inputBase64}`));
  return `${[line(head), ...rows.map(line)].join('\n')}\nseed ${r.seed}; ${r.executions} executions; ${r.findings} findings\n${findings.length > 0 ? `${findings.join('\n')}\n` : ''}`;
}
