// SPDX-License-Identifier: Apache-2.0
// Coverage feedback for the fuzzer from V8's own block coverage (the
// inspector's Profiler.takePreciseCoverage with call counts and block
// detail), so nothing is instrumented or transformed. Each take returns the
// counts since the previous take, so one take after one execution is that
// execution's coverage.
//
// A "feature" is one reported range with its count bucketed as libFuzzer
// buckets hit counts (1, 2, 3, 4-7, 8-15, 16-31, 32-127, 128+), and count 0
// kept as its own bucket: V8 reports a block only where its count differs
// from the enclosing range's, so a branch not taken is a 0-count range and a
// branch taken as often as its parent is no range at all; keeping both
// outcomes as features makes each direction of a branch count as coverage.
import inspector from 'node:inspector';

interface Range { startOffset: number; endOffset: number; count: number }
interface ScriptCoverage { scriptId: string; url: string; functions: { ranges: Range[] }[] }

function bucket(count: number): number {
  if (count < 4) return count; // 0, 1, 2, 3
  if (count < 8) return 4;
  if (count < 16) return 5;
  if (count < 32) return 6;
  if (count < 128) return 7;
  return 8;
}

export class BlockCoverage {
  readonly #session = new inspector.Session();
  readonly #include: (url: string) => boolean;
  /** scriptId → whether its url passes the filter (urls are fixed per script). */
  readonly #wanted = new Map<string, boolean>();

  /** `include`: which scripts count (by url), e.g. the parsers and their libraries but not the fuzzer. */
  constructor(include: (url: string) => boolean) {
    this.#include = include;
    this.#session.connect();
    this.#post('Profiler.enable');
    this.#post('Profiler.startPreciseCoverage', { callCount: true, detailed: true });
  }

  // An in-thread inspector session answers synchronously, inside post().
  #post(method: string, params?: object): unknown {
    const answer: { error?: Error; result?: unknown; answered: boolean } = { answered: false };
    this.#session.post(method, params, (err: Error | null, res?: unknown) => {
      answer.answered = true;
      if (err !== null) answer.error = err;
      answer.result = res;
    });
    if (!answer.answered) throw new Error(`inspector ${method} did not answer synchronously`);
    if (answer.error !== undefined) throw answer.error;
    return answer.result;
  }

  /** Resets the counters (call before the first execution to drop module loading). */
  reset(): void {
    this.#post('Profiler.takePreciseCoverage');
  }

  /** The features hit since the last take, as numbers keyed per script range and bucket. */
  take(into: (feature: string) => void): void {
    const { result } = this.#post('Profiler.takePreciseCoverage') as { result: ScriptCoverage[] };
    for (const script of result) {
      let wanted = this.#wanted.get(script.scriptId);
      if (wanted === undefined) {
        wanted = this.#include(script.url);
        this.#wanted.set(script.scriptId, wanted);
      }
      if (!wanted) continue;
      for (const fn of script.functions) {
        for (const r of fn.ranges) into(`${script.scriptId}:${r.startOffset}:${r.endOffset}:${bucket(r.count)}`);
      }
    }
  }

  stop(): void {
    this.#post('Profiler.stopPreciseCoverage');
    this.#post('Profiler.disable');
    this.#session.disconnect();
  }
}
