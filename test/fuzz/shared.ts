// SPDX-License-Identifier: Apache-2.0
// What run.ts and worker.ts share: the worker's inputs, its messages, and
// the layout of the shared memory the watchdog reads.
import type { FuzzStats } from './engine.ts';

/** Int32 slots: [0] executions finished, [1] 1 while an execution runs, [2] current input length. */
export const SHARED_HEADER = 16;
/** Room for the current input (targets' maxLen stays below this). */
export const SHARED_INPUT = 64 * 1024;

export interface WorkerInput {
  target: string;
  /** A module exporting `target`, used instead of the registry (the fuzzer's own tests). */
  module?: string;
  seconds: number;
  maxExecutions: number;
  seed: number;
  /** false: blind mutation (the fuzzer's own tests compare against it). */
  guided: boolean;
  stopOnFinding: boolean;
  shared: SharedArrayBuffer;
}

export type WorkerMessage =
  | { type: 'progress'; stats: FuzzStats }
  | { type: 'done'; stats: FuzzStats };
