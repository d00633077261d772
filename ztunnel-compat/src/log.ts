// SPDX-License-Identifier: Apache-2.0
// Structured logs (pino). `scope` plays the role of ztunnel's tracing target
// (xds, ca, inpod, access…); the level can be changed at runtime through the
// admin server's /logging. LOG_FORMAT=json writes ztunnel's JSON lines
// (level, time, scope, message, fields); plain (the default) writes ztunnel's
// text lines (src/telemetry.rs IstioFormat): time, level, scope and message
// separated by tabs, then the fields as k=v separated by spaces.
import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.ts';

export type { Logger } from 'pino';

/** pino's name for a level: `off` is its `silent`. */
const pinoLevel = (l: LogLevel): string => (l === 'off' ? 'silent' : l);

/**
 * The root logger at `level`; `targets` (RUST_LOG's `access=off` and the
 * like, by scope) set the level of each scope's logger when it is made.
 */
export function createLogger(level: LogLevel, format: 'plain' | 'json', destination: NodeJS.WritableStream = process.stderr, targets: Readonly<Record<string, LogLevel>> = {}): Logger {
  const log = pino({
    level: pinoLevel(level),
    base: undefined,
    messageKey: 'message',
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  }, (format === 'json' ? destination : plainDestination(destination)) as pino.DestinationStream);
  if (Object.keys(targets).length > 0) scopeLevels.set(log, targets);
  return log;
}

/**
 * A stream pino writes its JSON lines to, that writes each as a plain line
 * to `out`. pino hands over whole lines, one per write; a line that is not
 * JSON (never expected) passes through as it is.
 */
function plainDestination(out: NodeJS.WritableStream): { write(chunk: string): boolean } {
  return {
    write(chunk: string): boolean {
      let text = '';
      for (const line of chunk.split('\n')) {
        if (line === '') continue;
        try {
          text += plainLine(JSON.parse(line) as Record<string, unknown>) + '\n';
        } catch {
          text += line + '\n';
        }
      }
      return out.write(text);
    },
  };
}

/** One pino record as ztunnel's plain text line. */
export function plainLine(r: Record<string, unknown>): string {
  const { time, level, scope, message, ...fields } = r;
  let line = `${String(time)}\t${String(level)}\t${typeof scope === 'string' ? scope : 'skein'}\t${typeof message === 'string' ? message : ''}`;
  const kv = Object.entries(fields).map(([k, v]) => `${k}=${plainValue(k, v)}`);
  if (kv.length > 0) line += `\t${kv.join(' ')}`;
  return line;
}

// As ztunnel's fields print: numbers and booleans bare, addresses (recorded
// with Display) bare, other strings quoted (Debug).
function plainValue(key: string, v: unknown): string {
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (typeof v === 'string') return key.endsWith('.addr') ? v : JSON.stringify(v);
  return v === undefined ? 'null' : JSON.stringify(v);
}

// One child per (logger, scope), so /logging can set a scope's level later.
const children = new WeakMap<Logger, Map<string, Logger>>();
const scopeLevels = new WeakMap<Logger, Readonly<Record<string, LogLevel>>>();

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
    const level = scopeLevels.get(log)?.[scope];
    if (level !== undefined) child.level = pinoLevel(level);
    byScope.set(scope, child);
  }
  return child;
}

/** The scoped children made from `log` so far. */
export function scopesOf(log: Logger): ReadonlyMap<string, Logger> {
  return children.get(log) ?? new Map();
}
