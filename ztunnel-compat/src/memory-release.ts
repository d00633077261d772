// SPDX-License-Identifier: Apache-2.0
// Memory back to the system after a burst of connections ends. V8 keeps the
// pages a grown heap used resident after ordinary collections (measured on
// Node 24: 1,441 pages of 256 KiB, 313 MB, still resident with the heap back
// at 6 MB), and an idle daemon may not collect at all; only a
// memory-reducing collection (what V8 does under memory pressure) gives
// them back. So once the open file descriptors (a socket or two per
// connection) have fallen well below their peak, the daemon asks for one,
// then trims the C allocator. Rare by construction: only after at least
// MIN_DROP descriptors closed, at most once per check.
import fs from 'node:fs';
import { mallocTrim, memoryPressure } from '@skein/bpf';
import type { Logger } from './log.ts';

/** Descriptors that must have closed since the peak before memory is released. */
export const MIN_DROP = 1000;
export const CHECK_MS = 5000;

export interface ReleaseState { peak: number }

/**
 * Pure: given the peak since the last release and the count now, whether to
 * release now, and the peak to keep.
 */
export function releaseDecision(s: ReleaseState, fds: number): { release: boolean; next: ReleaseState } {
  const peak = Math.max(s.peak, fds);
  if (peak - fds >= MIN_DROP && fds <= peak / 2) return { release: true, next: { peak: fds } };
  return { release: false, next: { peak } };
}

function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** Checks every CHECK_MS; returns a stop function. */
export function startMemoryRelease(log: Logger, checkMs = CHECK_MS): () => void {
  let state: ReleaseState = { peak: openFds() };
  const timer = setInterval(() => {
    const fds = openFds();
    const d = releaseDecision(state, fds);
    state = d.next;
    if (!d.release) return;
    const before = process.memoryUsage().rss;
    const t0 = performance.now();
    memoryPressure();
    const trimmed = mallocTrim();
    const after = process.memoryUsage().rss;
    log.info({ scope: 'app', fds, rss_before_mb: Math.round(before / 2 ** 20), rss_after_mb: Math.round(after / 2 ** 20), pause_ms: Math.round(performance.now() - t0), trimmed }, 'connections closed: memory released');
  }, checkMs);
  timer.unref();
  return () => { clearInterval(timer); };
}
