// SPDX-License-Identifier: Apache-2.0
// One guard around every per-connection task (15001 outbound, 15006 inbound,
// each HBONE CONNECT on 15008): whatever a task throws or rejects with ends
// that connection only — it is logged as ztunnel logs an early deny
// (`connection failed` on the access log, with the error), counted, and its
// sockets are closed — and the daemon goes on serving every other pod. On
// Node 24 an unhandled rejection would otherwise end the process and with it
// the traffic of every pod on the node; ztunnel's per-connection tasks fail
// alone the same way.
import { Counter, type Registry } from 'prom-client';
import type { Logger } from '../log.ts';
import { logFailed, type AccessFields } from './access-log.ts';

/** Which per-connection entry a task serves. */
export type Stage = 'outbound' | 'inbound' | 'hbone';

/** Anything a failed task must close: sockets, HTTP/2 streams, tunnels. */
export interface Closable {
  destroy(): void;
}

type FaultHook = (stage: Stage) => void | Promise<void>;
let faultHook: FaultHook | undefined;

/**
 * Test-only: runs `hook` at the start of every guarded task (a throw or a
 * rejection there is the injected fault) until the returned function is
 * called. Production never sets it; the cost is one check per connection.
 */
export function injectFault(hook: FaultHook): () => void {
  faultHook = hook;
  return () => { if (faultHook === hook) faultHook = undefined; };
}

/** Called at the top of a task, inside the guard, where an injected fault belongs. */
export function checkFault(stage: Stage): void | Promise<void> {
  return faultHook?.(stage);
}

export class ConnectionGuard {
  readonly #failures: Counter<'stage'>;
  readonly #log: Logger;
  readonly #access: Logger;

  constructor(o: { registry: Registry; log: Logger; access: Logger }) {
    this.#log = o.log;
    this.#access = o.access;
    this.#failures = new Counter({
      name: 'skein_connection_task_failures_total',
      help: 'Connections whose proxy task failed with an unexpected error (closed alone; the daemon keeps serving)',
      labelNames: ['stage'],
      registers: [o.registry],
    });
  }

  /**
   * Runs `task` for one connection. A synchronous throw or a rejection is
   * reported once and closes `closables` (read when the failure happens, so
   * sockets made during the task can be listed).
   */
  run(stage: Stage, fields: () => AccessFields, closables: () => readonly (Closable | undefined)[], task: () => Promise<void> | void): void {
    let done: Promise<void> | void;
    try {
      done = task();
    } catch (err) {
      this.fail(stage, fields, closables, err);
      return;
    }
    if (done !== undefined) done.catch((err: unknown) => { this.fail(stage, fields, closables, err); });
  }

  /**
   * Counts a failed task and logs it on the proxy scope, for callers whose
   * access-log line is written elsewhere (an HBONE stream's 503 rejection).
   */
  count(stage: Stage, err: unknown): void {
    this.#failures.inc({ stage });
    this.#log.error({ stage, err: err instanceof Error ? err.message : String(err) }, 'connection task failed; closing that connection only');
  }

  /** Reports a failed connection task and closes what it had; never throws. */
  fail(stage: Stage, fields: () => AccessFields, closables: () => readonly (Closable | undefined)[], err: unknown): void {
    this.#failures.inc({ stage });
    const error = err instanceof Error ? err.message : String(err);
    try {
      logFailed(this.#access, { ...fields(), stage }, `internal error: ${error}`);
    } catch {
      this.#log.error({ stage, err: error }, 'connection failed (and its access-log fields could not be built)');
    }
    let list: readonly (Closable | undefined)[] = [];
    try {
      list = closables();
    } catch { /* nothing more to close */ }
    for (const c of list) {
      try {
        c?.destroy();
      } catch { /* already gone */ }
    }
  }
}
