// SPDX-License-Identifier: Apache-2.0
// What the daemon does with an error nothing caught. Node 24 ends the process
// on an unhandled rejection (and on an uncaught exception), which would take
// down every pod's traffic on the node for one connection's bug. ztunnel
// keeps serving when one connection task panics; so does Skein: the error is
// logged with its scope and counted (skein_unhandled_errors_total{kind}),
// and the daemon goes on. Per-connection work is caught before it gets here
// (proxy/guard.ts); this is the net under everything else.
import type { EventEmitter } from 'node:events';
import { Counter, type Registry } from 'prom-client';
import type { Logger } from './log.ts';

export type UnhandledKind = 'rejection' | 'exception';

export interface ProcessPolicy {
  /** Exposes the counts on a registry (the daemon's, once it exists). */
  attach(registry: Registry): void;
  counts(): Readonly<Record<UnhandledKind, number>>;
  /** Removes the handlers. */
  uninstall(): void;
}

export function installProcessPolicy(log: Logger, proc: Pick<EventEmitter, 'on' | 'off'> = process): ProcessPolicy {
  const counts: Record<UnhandledKind, number> = { rejection: 0, exception: 0 };
  const report = (kind: UnhandledKind, err: unknown): void => {
    counts[kind]++;
    const e = err instanceof Error ? { err: err.message, stack: err.stack } : { err: String(err) };
    log.error({ scope: 'app', kind, ...e }, kind === 'rejection' ? 'unhandled promise rejection; still serving' : 'uncaught exception; still serving');
  };
  const onRejection = (reason: unknown): void => { report('rejection', reason); };
  const onException = (err: unknown): void => { report('exception', err); };
  proc.on('unhandledRejection', onRejection);
  proc.on('uncaughtException', onException);
  return {
    attach(registry) {
      new Counter({
        name: 'skein_unhandled_errors_total',
        help: 'Errors that reached the process level (unhandled rejections, uncaught exceptions); the daemon kept serving',
        labelNames: ['kind'],
        registers: [registry],
        collect() {
          this.reset();
          for (const [kind, n] of Object.entries(counts)) this.inc({ kind }, n);
        },
      });
    },
    counts: () => ({ ...counts }),
    uninstall() {
      proc.off('unhandledRejection', onRejection);
      proc.off('uncaughtException', onException);
    },
  };
}
