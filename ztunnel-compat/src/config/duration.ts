// SPDX-License-Identifier: Apache-2.0
// Durations as ztunnel reads them from its environment (the duration_str
// crate): a number and a unit, in any case and short or long ("24h", "1H",
// "5min"... "1hour", "500ms"), several summed ("1h30m", "1h 30m",
// "3m+31s"), a term times a number ("1m*10"), or a bare number of seconds.
// A year is 365 days and a month 30, as there; below a millisecond rounds.
const UNIT_MS: ReadonlyMap<string, number> = new Map<string, number>([
  ...each(['y', 'yr', 'year', 'years'], 365 * 86_400_000),
  ...each(['mon', 'month', 'months'], 30 * 86_400_000),
  ...each(['w', 'week', 'weeks'], 7 * 86_400_000),
  ...each(['d', 'day', 'days'], 86_400_000),
  ...each(['h', 'hr', 'hour', 'hours'], 3_600_000),
  ...each(['m', 'min', 'mins', 'minute', 'minutes'], 60_000),
  ...each(['s', 'sec', 'secs', 'second', 'seconds'], 1000),
  ...each(['ms', 'msec', 'millisecond', 'milliseconds'], 1),
  ...each(['µs', 'us', 'µsec', 'usec', 'µsecond', 'usecond', 'microsecond', 'microseconds'], 1e-3),
  ...each(['ns', 'nsec', 'nanosecond', 'nanoseconds'], 1e-6),
]);

function each(names: readonly string[], ms: number): [string, number][] {
  return names.map((n) => [n, ms]);
}

// One term: a number, an optional unit, an optional "* number"; then "+", blanks or nothing.
const TERM = /\s*(\d+(?:\.\d+)?)\s*([a-zµ]*)\s*(?:\*\s*(\d+(?:\.\d+)?))?\s*\+?/iy;

/** Milliseconds, or undefined when the text is not a duration. */
export function parseDurationMs(text: string): number | undefined {
  const t = text.trim();
  if (t === '' || t.endsWith('+')) return undefined;
  let total = 0;
  TERM.lastIndex = 0;
  while (TERM.lastIndex < t.length) {
    const m = TERM.exec(t);
    if (m === null || m[0] === '') return undefined;
    const unit = (m[2] ?? '').toLowerCase();
    const perUnit = unit === '' ? 1000 : UNIT_MS.get(unit);
    if (perUnit === undefined) return undefined;
    total += Number(m[1]) * perUnit * (m[3] === undefined ? 1 : Number(m[3]));
  }
  return Number.isFinite(total) ? Math.round(total) : undefined;
}
