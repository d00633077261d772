// SPDX-License-Identifier: Apache-2.0
// Structured logs (pino). `scope` plays the role of ztunnel's tracing target
// (xds, ca, inpod, access…); the level can be changed at runtime through the
// admin server's /logging.
import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.ts';

export type { Logger } from 'pino';

export function createLogger(level: LogLevel, format: 'plain' | 'json', destination: NodeJS.WritableStream = process.stderr): Logger {
  return pino({
    level,
    base: undefined,
    messageKey: format === 'json' ? 'message' : 'msg',
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  }, destination as pino.DestinationStream);
}

// One child per (logger, scope), so /logging can set a scope's level later.
const children = new WeakMap<Logger, Map<string, Logger>>();

/** A child logger for one subsystem. */
export function scoped(log: Logger, scope: string): Logger {
  let byScope = children.get(log);
  if (byScope === undefined) {
    byScope = new Map();
    children.set(log, byScope);
  }
  let child = byScope.get(scope);
  if (child === undefined) {
    child = log.child({ scope });
    byScope.set(scope, child);
  }
  return child;
}

/** The scoped children made from `log` so far. */
export function scopesOf(log: Logger): ReadonlyMap<string, Logger> {
  return children.get(log) ?? new Map();
}
