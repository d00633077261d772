// SPDX-License-Identifier: Apache-2.0
// One target's fuzz loop, in a worker thread so that run.ts can stop an
// execution that hangs (worker.terminate() interrupts even a synchronous
// loop). Before each execution the input is copied into shared memory and a
// counter bumped, so the watchdog knows what hung.
import { parentPort, workerData } from 'node:worker_threads';
import { BlockCoverage } from './coverage.ts';
import { countsForCoverage, fuzz, type FuzzStats } from './engine.ts';
import type { FuzzTarget } from './target.ts';
import { findTarget } from './targets/index.ts';
import { SHARED_HEADER, type WorkerInput, type WorkerMessage } from './shared.ts';

const d = workerData as WorkerInput;
// Coverage starts before the target's modules load, so all their code is counted.
const coverage = new BlockCoverage(countsForCoverage);
const target = d.module === undefined ? await findTarget(d.target) : ((await import(d.module)) as { target: FuzzTarget }).target;
const counters = new Int32Array(d.shared, 0, SHARED_HEADER / 4);
const bytes = new Uint8Array(d.shared, SHARED_HEADER);
const post = (m: WorkerMessage): void => { parentPort?.postMessage(m); };

const stats: FuzzStats = await fuzz(target, {
  seconds: d.seconds,
  maxExecutions: d.maxExecutions,
  seed: d.seed,
  coverage,
  guided: d.guided,
  stopOnFinding: d.stopOnFinding,
  before: (input) => {
    const n = Math.min(input.length, bytes.length);
    bytes.set(input.subarray(0, n));
    Atomics.store(counters, 2, n);
    Atomics.store(counters, 1, 1);
  },
  after: () => {
    Atomics.store(counters, 1, 0);
    Atomics.add(counters, 0, 1);
  },
  progress: (s) => { post({ type: 'progress', stats: s }); },
});
post({ type: 'done', stats });
