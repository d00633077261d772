// SPDX-License-Identifier: Apache-2.0
// Durations as ztunnel's environment writes them: "24h", "5m", "180s",
// "500ms", combinations like "1h30m", or a bare number of seconds.
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds, or undefined when the text is not a duration. */
export function parseDurationMs(text: string): number | undefined {
  const t = text.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Math.round(Number(t) * 1000);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let end = 0;
  for (let m = re.exec(t); m !== null; m = re.exec(t)) {
    total += Number(m[1]) * (UNITS[m[2] ?? ''] ?? Number.NaN);
    end = re.lastIndex;
  }
  return end === t.length && end > 0 && Number.isFinite(total) ? Math.round(total) : undefined;
}
