// SPDX-License-Identifier: Apache-2.0
// What the VM's tunnel runs send, shared with kmod/test/hbone_interop.c (its
// pattern table says the same).
// The pattern repeats every P bytes so that neither side spends CPU making
// or checking it beyond a memcmp: the runs measure the tunnel, not the test.

export const PATTERN_PERIOD = 65521;

/** Two periods back to back, so any window of up to one period is one slice. */
const table = Buffer.alloc(2 * PATTERN_PERIOD);
for (let j = 0; j < table.length; j++) {
  const k = j % PATTERN_PERIOD;
  table[j] = (k * 13 + (k >> 7)) & 0xff;
}

/** The bytes at [offset, offset + length) of a run; length at most one period. */
export function patternAt(offset: number, length: number): Buffer {
  if (length > PATTERN_PERIOD) throw new RangeError(`at most ${PATTERN_PERIOD} bytes at a time`);
  const at = offset % PATTERN_PERIOD;
  return table.subarray(at, at + length);
}

/** Whether chunk is what a run carries at offset. */
export function matchesPattern(offset: number, chunk: Buffer): boolean {
  for (let pos = 0; pos < chunk.length; pos += PATTERN_PERIOD) {
    const n = Math.min(PATTERN_PERIOD, chunk.length - pos);
    if (!chunk.subarray(pos, pos + n).equals(patternAt(offset + pos, n))) return false;
  }
  return true;
}
