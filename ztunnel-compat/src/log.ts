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
/** pino's level numbers; `off` passes nothing. */
const RANK: Readonly<Record<LogLevel, number>> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, off: Infinity };

/**
 * The levels in force, as a tracing filter holds them: a default, and a
 * level per scope (RUST_LOG's `access=off`, /logging's `access:debug`).
 * `ztunnel` stands for every scope of ztunnel's own crate, which `access`
 * (a target of its own there) is not.
 */
interface Levels {
  global: LogLevel;
  scopes: Map<string, LogLevel>;
  readonly initial: { readonly global: LogLevel; readonly scopes: ReadonlyMap<string, LogLevel> };
}

/**
 * The scopes Skein logs under (a scoped logger's, or a call's `scope` on
 * the root): what /logging and RUST_LOG targets name. A test keeps the list
 * in step with the code.
 */
export const SCOPES: readonly string[] = ['accel', 'access', 'admin', 'app', 'ca', 'crl', 'dns', 'inpod', 'proxy', 'state', 'xds'];
/** ztunnel's crate as a target: every scope but `access`. */
const CRATE = 'ztunnel';
const isSkeinScope = (scope: string): boolean => scope === CRATE || SCOPES.includes(scope);

const levelsOf = new WeakMap<Logger, Levels>();
// The scoped children (the hook lets them be) and each one's root (for /logging).
const scopedLoggers = new WeakSet<object>();
const rootOf = new WeakMap<Logger, Logger>();
// One child per (root, scope): /logging reaches every one.
const children = new WeakMap<Logger, Map<string, Logger>>();

function levelFor(levels: Levels, scope: string | undefined): LogLevel {
  if (scope === undefined) return levels.global;
  return levels.scopes.get(scope) ?? (scope === 'access' ? undefined : levels.scopes.get(CRATE)) ?? levels.global;
}

/**
 * The root logger at `level`; `targets` (RUST_LOG's `access=off` and the
 * like, by scope) override it per scope. Each scoped logger runs at its
 * scope's level; the root runs at the lowest level any scope wants, and a
 * hook drops what the `scope` field of a call on it does not.
 */
export function createLogger(level: LogLevel, format: 'plain' | 'json', destination: NodeJS.WritableStream = process.stderr, targets: Readonly<Record<string, LogLevel>> = {}): Logger {
  const scopes = new Map(Object.entries(targets));
  const levels: Levels = { global: level, scopes, initial: { global: level, scopes: new Map(scopes) } };
  const log = pino({
    level: pinoLevel(lowest(levels)),
    hooks: {
      logMethod(args, method, n) {
        // A scoped logger already runs at its scope's level (a `scope` field on it only refines
        // what the line shows, as ztunnel::proxy::inbound is still proxy). A call on the root,
        // which runs at the lowest level any scope wants, names its scope in the field.
        if (!scopedLoggers.has(this)) {
          const first: unknown = args[0];
          const field = typeof first === 'object' && first !== null ? (first as { scope?: unknown }).scope : undefined;
          if (n < RANK[levelFor(levels, typeof field === 'string' ? field : undefined)]) return;
        }
        method.apply(this, args);
      },
    },
    base: undefined,
    messageKey: 'message',
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  }, (format === 'json' ? destination : plainDestination(destination)) as pino.DestinationStream);
  levelsOf.set(log, levels);
  return log;
}

/** The root's level: the lowest any scope Skein has wants (calls on the root that name a scope are filtered by the hook). */
function lowest(levels: Levels): LogLevel {
  let low: LogLevel = levels.global;
  for (const [scope, l] of levels.scopes) if (isSkeinScope(scope) && RANK[l] < RANK[low]) low = l;
  return low;
}

/** A level change as /logging takes it (admin/log-levels.ts): a default, per-scope levels, and whether to start again from RUST_LOG's. */
export interface LevelsChange {
  global?: LogLevel;
  scopes: ReadonlyMap<string, LogLevel>;
  reset: boolean;
}

/**
 * Applies a change as ztunnel's set_level does: added to the levels in
 * force (a new default keeps every scope's own level), or, with `reset`,
 * to RUST_LOG's.
 */
export function changeLevels(log: Logger, change: LevelsChange): void {
  const root = rootOf.get(log) ?? log;
  const levels = levelsOf.get(root);
  if (levels === undefined) throw new Error('not a logger made by createLogger');
  if (change.reset) {
    levels.global = levels.initial.global;
    levels.scopes = new Map(levels.initial.scopes);
  }
  if (change.global !== undefined) levels.global = change.global;
  for (const [scope, level] of change.scopes) levels.scopes.set(scope, level);
  root.level = pinoLevel(lowest(levels));
  // A scoped logger runs at its scope's level exactly, so isLevelEnabled spares work (access-log.ts).
  for (const [scope, child] of children.get(root) ?? []) child.level = pinoLevel(levelFor(levels, scope));
}

/** The levels in force: "info", or "info (access:off,proxy:debug)". */
export function describeLevels(log: Logger): string {
  const levels = levelsOf.get(rootOf.get(log) ?? log);
  if (levels === undefined) return log.level;
  const own = [...levels.scopes].map(([s, l]) => `${s}:${l}`).sort();
  return own.length === 0 ? levels.global : `${levels.global} (${own.join(',')})`;
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

/** A child logger for one subsystem (its records carry `scope`, and its level is the scope's). */
export function scoped(log: Logger, scope: string): Logger {
  const root = rootOf.get(log) ?? log;
  let byScope = children.get(root);
  if (byScope === undefined) {
    byScope = new Map();
    children.set(root, byScope);
  }
  let child = byScope.get(scope);
  if (child === undefined) {
    child = root.child({ scope });
    const levels = levelsOf.get(root);
    if (levels !== undefined) child.level = pinoLevel(levelFor(levels, scope));
    scopedLoggers.add(child);
    rootOf.set(child, root);
    byScope.set(scope, child);
  }
  return child;
}

/** The scopes a level may name: Skein's, any other that has a logger (tests), and ztunnel's crate. */
export function knownScopes(log: Logger): Set<string> {
  const root = rootOf.get(log) ?? log;
  return new Set([...SCOPES, CRATE, ...(children.get(root)?.keys() ?? [])]);
}
