// SPDX-License-Identifier: Apache-2.0
// The fuzz loop (runs inside a worker; see run.ts for the watchdog): run the
// seeds, then repeatedly pick a corpus entry, mutate it, run it, and keep it
// when it reached a coverage feature no earlier input reached. Anything the
// target throws other than its declared errors is a finding, saved with the
// input that caused it. Bounded by time and by execution count.
import { BlockCoverage } from './coverage.ts';
import { mutate, Rng } from './mutate.ts';
import type { FuzzTarget } from './target.ts';

export interface Finding {
  kind: 'crash' | 'hang';
  /** The error's name and message (or what hung). */
  message: string;
  stack: string;
  input: Buffer;
  /** Which execution found it (1-based). */
  atExecution: number;
}

export interface FuzzStats {
  target: string;
  parser: string;
  executions: number;
  seconds: number;
  seeds: number;
  /** Inputs kept: the seeds plus every input that reached new coverage. */
  corpus: number;
  /** How many mutated inputs reached new coverage (corpus growth beyond the seeds). */
  newCoverage: number;
  /** Distinct coverage features (block ranges × hit-count buckets) reached. */
  features: number;
  findings: Finding[];
}

export interface EngineOptions {
  seconds: number;
  maxExecutions: number;
  seed: number;
  /** Called around every execution (the worker publishes the input for its watchdog). */
  before?: (input: Buffer) => void;
  after?: () => void;
  /** Called about once a second with the running figures. */
  progress?: (s: FuzzStats) => void;
  /** Findings kept (distinct by message); the run goes on after each. */
  maxFindings?: number;
  /**
   * The coverage source, started before the target's modules were imported
   * (V8 may not count code that ran before precise coverage began); made
   * here, with the default filter, when absent. Stopped at the end.
   */
  coverage?: BlockCoverage;
  /** false: never keep inputs for new coverage (blind mutation of the seeds; the fuzzer's own tests compare). */
  guided?: boolean;
  /** End the run at the first finding. */
  stopOnFinding?: boolean;
}

/**
 * Coverage counts for code outside the fuzzer (the parsers, the daemon, their
 * libraries), and for the fuzzer's own test fixtures.
 */
export function countsForCoverage(url: string): boolean {
  return url.startsWith('file://') && (!url.includes('/test/fuzz/') || url.includes('/test/fuzz/fixtures/'));
}

function describe(err: unknown): { message: string; stack: string } {
  if (err instanceof Error) return { message: `${err.name}: ${err.message}`, stack: err.stack ?? '' };
  return { message: `non-Error thrown: ${String(err)}`, stack: '' };
}

export async function fuzz(target: FuzzTarget, o: EngineOptions): Promise<FuzzStats> {
  const rng = new Rng(o.seed);
  const dictionary = (target.dictionary ?? []).map((t) => (typeof t === 'string' ? Buffer.from(t) : t));
  const corpus: Buffer[] = [];
  const seen = new Set<string>();
  const findings = new Map<string, Finding>();
  const stats: FuzzStats = {
    target: target.name, parser: target.parser, executions: 0, seconds: 0, seeds: 0, corpus: 0, newCoverage: 0, features: 0, findings: [],
  };
  const cov = o.coverage ?? new BlockCoverage(countsForCoverage);
  let fresh = 0;
  const note = (f: string): void => {
    if (seen.has(f)) return;
    seen.add(f);
    fresh++;
  };

  /** Runs one input; true when it reached new coverage. */
  const execute = async (input: Buffer): Promise<boolean> => {
    o.before?.(input);
    try {
      const r = target.run(input);
      if (r !== undefined) await r;
    } catch (err) {
      if (!target.declared.some((c) => err instanceof c)) {
        const d = describe(err);
        if (!findings.has(d.message) && findings.size < (o.maxFindings ?? 20)) findings.set(d.message, { kind: 'crash', ...d, input: Buffer.from(input), atExecution: stats.executions + 1 });
      }
    }
    o.after?.();
    stats.executions++;
    fresh = 0;
    cov.take(note);
    return fresh > 0;
  };

  const started = performance.now();
  const elapsed = (): number => (performance.now() - started) / 1000;
  try {
    cov.reset();
    for (const s of target.seeds()) {
      const input = s.length > target.maxLen ? s.subarray(0, target.maxLen) : s;
      await execute(input);
      corpus.push(input); // every seed stays, new coverage or not
      stats.seeds++;
    }
    if (corpus.length === 0) corpus.push(Buffer.alloc(0));
    let lastProgress = 0;
    const ctx = { corpus, dictionary, maxLen: target.maxLen };
    while (stats.executions < o.maxExecutions && elapsed() < o.seconds && !(o.stopOnFinding === true && findings.size > 0)) {
      // Favour recent entries: they sit at the coverage frontier (half the picks from the newest eight).
      const base = rng.below(2) === 0 ? (corpus[corpus.length - 1 - rng.below(Math.min(8, corpus.length))] ?? rng.pick(corpus)) : rng.pick(corpus);
      const input = mutate(base, rng, ctx);
      if (await execute(input) && o.guided !== false) {
        corpus.push(input);
        stats.newCoverage++;
      }
      if (o.progress !== undefined && elapsed() - lastProgress >= 1) {
        lastProgress = elapsed();
        o.progress({ ...stats, seconds: lastProgress, corpus: corpus.length, features: seen.size, findings: [...findings.values()] });
      }
    }
  } finally {
    cov.stop();
  }
  return { ...stats, seconds: elapsed(), corpus: corpus.length, features: seen.size, findings: [...findings.values()] };
}
