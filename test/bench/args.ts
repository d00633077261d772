// SPDX-License-Identifier: Apache-2.0
// The bench CLI's arguments: `[scenario] [--json] [--reps N] [--duration S]
// [--paths a,b] [--node-arg=F ...]`.
// Anything else is a usage error (exit 2), never silently ignored.
import { parseArgs } from 'node:util';

export interface BenchArgs {
  scenario: string;
  json: boolean;
  reps: number;
  durationS: number;
  /** Only these paths of the scenario (checked against it by the caller); all when undefined. */
  paths?: string[];
  /** Extra Node.js flags for the Skein daemons (profiling, GC tracing). */
  nodeArgs?: string[];
  /** resilience: which parts (all when undefined). */
  parts?: string[];
  /** resilience: connections per path in the soak. */
  soakConns?: number;
  /** resilience: seconds each fault lasts. */
  faultS?: number;
  help: boolean;
}

export class UsageError extends Error {
  override name = 'UsageError';
}

export const DEFAULTS = { scenario: 'reference', reps: 3, durationS: 2 } as const;
const MAX_REPS = 20;
const MAX_DURATION_S = 60;
const MAX_SOAK = 20_000;
export const DEFAULT_SOAK = 10_000;

export function usage(scenarios: readonly string[]): string {
  return `usage: npm run bench -- [scenario] [--json] [--reps N] [--duration S]
  scenario      one of: ${scenarios.join(', ')} (default ${DEFAULTS.scenario})
  --json        print one JSON object (medians, with min/max) on stdout; progress goes to stderr
  --reps N      repetitions per path, 1-${MAX_REPS} (default ${DEFAULTS.reps})
  --duration S  seconds per load run, whole, 1-${MAX_DURATION_S} (default ${DEFAULTS.durationS})
  --paths a,b   measure only these paths of the scenario
  --node-arg=F  a Node.js flag for the Skein daemons, e.g. --node-arg=--cpu-prof (repeatable)
  --parts a,b   resilience: only these parts (upgrade, faults, soak, fuzz)
  --fault-s N   resilience: seconds each fault lasts, 1-120 (default 60)
  --soak-conns N  resilience: connections per path held by the soak, 1-${MAX_SOAK} (default ${DEFAULT_SOAK})
`;
}

function count(raw: string | undefined, name: string, fallback: number, max: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1 || n > max) throw new UsageError(`--${name} must be a whole number from 1 to ${max}, got '${raw}'`);
  return n;
}

export function parseBenchArgs(argv: readonly string[], scenarios: readonly string[]): BenchArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        json: { type: 'boolean', default: false },
        reps: { type: 'string' },
        duration: { type: 'string' },
        paths: { type: 'string' },
        'node-arg': { type: 'string', multiple: true },
        parts: { type: 'string' },
        'soak-conns': { type: 'string' },
        'fault-s': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (e) {
    // Node's own message suggests '--' tricks that do not apply here.
    const unknown = /Unknown option '([^']+)'/.exec((e as Error).message)?.[1];
    throw new UsageError(unknown === undefined ? (e as Error).message : `unknown flag '${unknown}'`);
  }
  const { values, positionals } = parsed;
  if (positionals.length > 1) throw new UsageError(`one scenario at a time, got: ${positionals.join(' ')}`);
  const scenario = positionals[0] ?? DEFAULTS.scenario;
  if (!values.help && !scenarios.includes(scenario)) throw new UsageError(`unknown scenario '${scenario}' (known: ${scenarios.join(', ')})`);
  const paths = values.paths?.split(',').map((p) => p.trim());
  if (paths?.some((p) => p === '') === true) throw new UsageError(`--paths takes path names separated by commas, got '${values.paths}'`);
  const nodeArgs = values['node-arg'];
  const notFlag = nodeArgs?.find((a) => !a.startsWith('--'));
  if (notFlag !== undefined) throw new UsageError(`--node-arg takes a Node.js flag (--node-arg=--cpu-prof), got '${notFlag}'`);
  return {
    scenario,
    json: values.json,
    reps: count(values.reps, 'reps', DEFAULTS.reps, MAX_REPS),
    durationS: count(values.duration, 'duration', DEFAULTS.durationS, MAX_DURATION_S),
    ...(paths === undefined ? {} : { paths }),
    ...(nodeArgs === undefined ? {} : { nodeArgs }),
    ...(values.parts === undefined ? {} : { parts: values.parts.split(',').map((p) => p.trim()) }),
    ...(values['fault-s'] === undefined ? {} : { faultS: count(values['fault-s'], 'fault-s', 60, 120) }),
    ...(values['soak-conns'] === undefined ? {} : { soakConns: count(values['soak-conns'], 'soak-conns', DEFAULT_SOAK, MAX_SOAK) }),
    help: values.help,
  };
}
