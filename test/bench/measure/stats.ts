// SPDX-License-Identifier: Apache-2.0
// Summaries of repeated measurements: a benchmark reports the median of its
// repetitions, with min and max to show how much one run can be trusted.

export interface Spread {
  min: number;
  median: number;
  max: number;
}

/** Median of a non-empty list; the mean of the middle two for an even count. */
export function median(values: readonly number[]): number {
  const s = sorted(values);
  const mid = Math.floor(s.length / 2);
  const hi = s[mid] ?? NaN;
  return s.length % 2 === 1 ? hi : ((s[mid - 1] ?? NaN) + hi) / 2;
}

/** Min, median and max of a non-empty list. */
export function spread(values: readonly number[]): Spread {
  const s = sorted(values);
  return { min: s[0] ?? NaN, median: median(s), max: s[s.length - 1] ?? NaN };
}

/** The p-th percentile (nearest rank) of a non-empty list. */
export function percentile(values: readonly number[], p: number): number {
  const s = sorted(values);
  const rank = Math.min(s.length, Math.max(1, Math.ceil((p / 100) * s.length)));
  return s[rank - 1] ?? NaN;
}

function sorted(values: readonly number[]): number[] {
  if (values.length === 0) throw new RangeError('no values to summarise');
  if (values.some((v) => !Number.isFinite(v))) throw new RangeError(`not a finite number among ${values.join(', ')}`);
  return [...values].sort((a, b) => a - b);
}
