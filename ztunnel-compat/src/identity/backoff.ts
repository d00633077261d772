// SPDX-License-Identifier: Apache-2.0
// Retry delays after a failed certificate fetch, as ztunnel's manager.rs sets
// up the backoff crate: start at 1 s, double each time, ±20% jitter, never
// more than 150 s. Pure, so tests pin the numbers without a clock.

export const CERT_RETRY_INITIAL_MS = 1_000;
export const CERT_RETRY_MULTIPLIER = 2;
export const CERT_RETRY_JITTER = 0.2;
export const CERT_RETRY_MAX_MS = 150_000;

/**
 * The wait before retry number `failures + 1`, given `random` in [0, 1).
 * The backoff crate can overshoot its max by the jitter; ztunnel's comment
 * promises "the 150 second wait", so the jittered value is capped too.
 */
export function certRetryDelay(failures: number, random: number): number {
  const base = Math.min(CERT_RETRY_INITIAL_MS * CERT_RETRY_MULTIPLIER ** Math.max(0, failures), CERT_RETRY_MAX_MS);
  const jittered = base * (1 + CERT_RETRY_JITTER * (2 * random - 1));
  return Math.round(Math.min(jittered, CERT_RETRY_MAX_MS));
}
