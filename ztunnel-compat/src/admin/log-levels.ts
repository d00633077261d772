// SPDX-License-Identifier: Apache-2.0
// The /logging?level=… argument, as ztunnel and `istioctl ztunnel-config log`
// write it: comma-separated directives, each a level (`debug`) or a target
// and a level (`access:debug`; `=` accepted too). Empty means "only show".
// Pure, so every accepted and refused form is tested.
import { isLogLevel, LOG_LEVELS, type LogLevel } from '../config.ts';

export interface LevelChange {
  /** The level for everything, when a bare level was given. */
  global?: LogLevel;
  /** Per target (our log `scope`). */
  scopes: Map<string, LogLevel>;
}

export class LevelError extends Error {
  override name = 'LevelError';
}


export function parseLevelDirectives(arg: string): LevelChange {
  const change: LevelChange = { scopes: new Map() };
  for (const raw of arg.split(',')) {
    const d = raw.trim();
    if (d === '') continue;
    const sep = d.search(/[:=]/);
    if (sep < 0) {
      if (!isLogLevel(d)) throw new LevelError(`invalid level '${d}' (one of ${LOG_LEVELS.join(', ')})`);
      change.global = d;
      continue;
    }
    const target = d.slice(0, sep).trim();
    const level = d.slice(sep + 1).trim();
    if (!/^[a-z][a-z0-9_:-]*$/.test(target)) throw new LevelError(`invalid target '${target}'`);
    if (!isLogLevel(level)) throw new LevelError(`invalid level '${level}' for ${target} (one of ${LOG_LEVELS.join(', ')})`);
    change.scopes.set(target, level);
  }
  return change;
}
