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

/** A child logger for one subsystem. */
export function scoped(log: Logger, scope: string): Logger {
  return log.child({ scope });
}
