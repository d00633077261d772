// SPDX-License-Identifier: Apache-2.0
// The demo's result: one entry per path, printed for a person or as JSON.
// Pure, so its shape is tested without a lab.

export interface PathReport {
  /** cross-node-hbone | same-node | passthrough | waypoint | denied | dns */
  path: string;
  /** The traffic went the way the path's name says (proved by counters and logs, not assumed). */
  taken: boolean;
  /** The outcome was the expected one: bytes delivered intact, or for `denied`, refused. */
  ok: boolean;
  /** Payload bytes the client received. */
  bytes: number;
  /** Median time of a small request through this path, connect included (ms). */
  latency_ms: number;
  /** What Skein decided, from its access log and the policy in force. */
  decision: string;
  /** How `taken` was proved. */
  evidence: string;
  /** When not ok: what the client saw that was wrong (curl's exit, status, bytes, error). */
  failure?: string;
}

export interface DemoReport {
  paths: PathReport[];
  /** Paths that do not exist yet, and why. */
  pending: string[];
  /** Where to look: files and commands. */
  look: string[];
}

export function allOk(r: DemoReport): boolean {
  return r.paths.length > 0 && r.paths.every((p) => p.ok && p.taken);
}

export function toJson(r: DemoReport): string {
  return `${JSON.stringify(r)}\n`;
}

function fmtBytes(n: number): string {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;
}

export function toText(r: DemoReport): string {
  const rows = r.paths.map((p) => [
    p.path,
    p.taken ? 'taken' : 'NOT TAKEN',
    p.ok ? 'ok' : 'FAILED',
    fmtBytes(p.bytes),
    `${p.latency_ms.toFixed(2)} ms`,
  ]);
  const widths = [0, 1, 2, 3, 4].map((i) => Math.max(...rows.map((row) => (row[i] ?? '').length)));
  const lines = ['Skein demo: two nodes, Skein on each, traffic along every path', ''];
  for (const [i, p] of r.paths.entries()) {
    const row = rows[i] ?? [];
    lines.push(`  ${row.map((c, j) => c.padEnd(widths[j] ?? 0)).join('  ')}`);
    lines.push(`      decision: ${p.decision}`);
    lines.push(`      evidence: ${p.evidence}`);
    if (p.failure !== undefined) lines.push(`      failure:  ${p.failure}`);
  }
  if (r.pending.length > 0) lines.push('', 'Not yet:', ...r.pending.map((x) => `  - ${x}`));
  lines.push('', 'Where to look:', ...r.look.map((x) => `  ${x}`));
  lines.push('', allOk(r) ? 'All paths behaved as expected.' : 'Some paths did not behave as expected (see above).', '');
  return lines.join('\n');
}
