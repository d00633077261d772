// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MIN_DROP, releaseDecision } from './memory-release.ts';

test('memory is released once descriptors fell by MIN_DROP and to half their peak, then the peak restarts there', () => {
  let s = { peak: 60 };
  const steps = [60, 10_060, 20_060, 15_000, 9_000, 60, 60, 700, 80];
  const released: number[] = [];
  for (const fds of steps) {
    const d = releaseDecision(s, fds);
    if (d.release) released.push(fds);
    s = d.next;
  }
  // 15,000 is not half of 20,060; 9,000 is; 60 after that is a drop from 9,000; 80 after 700 is too small a drop.
  assert.deepEqual(released, [9_000, 60]);
  assert.equal(releaseDecision({ peak: MIN_DROP - 1 + 60 }, 60).release, false, 'a small burst is not worth a collection');
});
