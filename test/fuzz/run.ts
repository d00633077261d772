// SPDX-License-Identifier: Apache-2.0
// Runs targets one after another, each in its own worker, under a watchdog:
// an execution that takes longer than `execTimeoutMs` is a hang finding (the
// worker is terminated and the input it was running is kept); a worker that
// dies is a crash finding. Findings can be written to a directory as files.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Finding, FuzzStats } from './engine.ts';
import { SHARED_HEADER, SHARED_INPUT, type WorkerInput, type WorkerMessage } from './shared.ts';

export interface RunOptions {
  seconds: number;
  maxExecutions?: number;
  /** One execution longer than this is a hang. */
  execTimeoutMs?: number;
  seed?: number;
  /** Where findings are written as `<target>-<sha1>.bin` (not written when unset). */
  outDir?: string;
  log?: (line: string) => void;
  /** Load the target from this module (file URL) instead of the registry. */
  module?: string;
  /** false: keep no input for new coverage (blind mutation, for comparison). */
  guided?: boolean;
  /** End a target's run at its first finding. */
  stopOnFinding?: boolean;
}

/** Buffers cross postMessage as plain Uint8Arrays. */
function revive(s: FuzzStats): FuzzStats {
  return { ...s, findings: s.findings.map((f) => ({ ...f, input: Buffer.from(f.input) })) };
}

function empty(target: string): FuzzStats {
  return { target, parser: '', executions: 0, seconds: 0, seeds: 0, corpus: 0, newCoverage: 0, features: 0, findings: [] };
}

export function runTarget(target: string, o: RunOptions): Promise<FuzzStats> {
  const execTimeoutMs = o.execTimeoutMs ?? 2000;
  const shared = new SharedArrayBuffer(SHARED_HEADER + SHARED_INPUT);
  const counters = new Int32Array(shared, 0, SHARED_HEADER / 4);
  const bytes = new Uint8Array(shared, SHARED_HEADER);
  const input: WorkerInput = { target, seconds: o.seconds, maxExecutions: o.maxExecutions ?? Number.MAX_SAFE_INTEGER, seed: o.seed ?? 1, guided: o.guided ?? true, stopOnFinding: o.stopOnFinding ?? false, shared, ...(o.module === undefined ? {} : { module: o.module }) };
  const worker = new Worker(new URL('./worker.ts', import.meta.url), { workerData: input });
  const started = performance.now();
  let last = empty(target);
  return new Promise((resolve) => {
    let done = false;
    let seenCount = -1;
    let seenAt = performance.now();
    const finish = (s: FuzzStats, extra?: Finding): void => {
      if (done) return;
      done = true;
      clearInterval(watch);
      const executions = Math.max(s.executions, Atomics.load(counters, 0));
      resolve({ ...s, executions, seconds: (performance.now() - started) / 1000, findings: extra === undefined ? s.findings : [...s.findings, extra] });
      // terminate() also ends a worker that already finished; harmless then.
      void worker.terminate();
    };
    const current = (): Buffer => Buffer.from(bytes.subarray(0, Atomics.load(counters, 2)));
    const watch = setInterval(() => {
      const count = Atomics.load(counters, 0);
      const now = performance.now();
      if (count !== seenCount) {
        seenCount = count;
        seenAt = now;
        return;
      }
      const running = Atomics.load(counters, 1) === 1;
      // Loading the target (module imports, seeds) gets a generous allowance; an execution gets execTimeoutMs.
      const limit = count === 0 ? Math.max(execTimeoutMs, 30_000) : execTimeoutMs;
      if (now - seenAt > limit && (running || count === 0)) {
        finish(last, { kind: 'hang', message: `an execution ran longer than ${limit} ms`, stack: '', input: running ? current() : Buffer.alloc(0), atExecution: count + 1 });
      } else if (now - started > (o.seconds + 60) * 1000) {
        finish(last, { kind: 'hang', message: `the run did not end within ${o.seconds + 60} s`, stack: '', input: current(), atExecution: Atomics.load(counters, 0) + 1 });
      }
    }, 50);
    worker.on('message', (m: WorkerMessage) => {
      last = revive(m.stats);
      if (m.type === 'done') finish(last);
      else o.log?.(`${target}: ${last.executions} executions, corpus ${last.corpus}, features ${last.features}`);
    });
    worker.on('error', (err: Error) => {
      finish(last, { kind: 'crash', message: `worker died: ${err.name}: ${err.message}`, stack: err.stack ?? '', input: current(), atExecution: Atomics.load(counters, 0) + 1 });
    });
    worker.on('exit', (code) => {
      if (!done) finish(last, { kind: 'crash', message: `worker exited with code ${code} before reporting`, stack: '', input: current(), atExecution: Atomics.load(counters, 0) + 1 });
    });
  }).then((s) => {
    const stats = s as FuzzStats;
    if (o.outDir !== undefined) {
      for (const f of stats.findings) {
        fs.mkdirSync(o.outDir, { recursive: true });
        const file = path.join(o.outDir, `${target}-${createHash('sha1').update(f.input).digest('hex').slice(0, 12)}.bin`);
        fs.writeFileSync(file, f.input);
        o.log?.(`${target}: ${f.kind} (${f.message}) saved to ${file}`);
      }
    }
    return stats;
  });
}

export async function runTargets(targets: readonly string[], o: RunOptions): Promise<FuzzStats[]> {
  const out: FuzzStats[] = [];
  for (const t of targets) out.push(await runTarget(t, o));
  return out;
}
