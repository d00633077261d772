// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { figures, parseBenchLines } from './run.ts';
import { matchesPattern, patternAt } from '../../vm/bench-pattern.ts';

test('the VM programs\' bench lines are parsed, other lines ignored', () => {
  const out = 'ready 4000\nbench userspace bytes=1048576 ms=2000 cpu_ms=1990\nok - x\nbench kmod bytes=1048576 ms=500 cpu_ms=480\nbench kmod bytes=x ms=1 cpu_ms=1\nbench engine-kmod bytes=8 ms=2 cpu_ms=1\n';
  assert.deepEqual(parseBenchLines(out), [
    { path: 'userspace', bytes: 1048576, ms: 2000, cpuMs: 1990 },
    { path: 'kmod', bytes: 1048576, ms: 500, cpuMs: 480 },
    { path: 'engine-kmod', bytes: 8, ms: 2, cpuMs: 1 },
  ]);
});

test('figures count both directions', () => {
  // 512 MiB each way in 4 s: 1 GiB moved, 256 MiB/s; 2 s of CPU: 2 s per GiB.
  assert.deepEqual(figures({ path: 'kmod', bytes: 512 * 2 ** 20, ms: 4000, cpuMs: 2000 }), { throughput_mib_s: 256, cpu_s_per_gib: 2 });
});

test('the pattern is the one hbone_interop.c sends: (k*13 + (k>>7)) mod 256, k = i mod 65521', () => {
  assert.equal(patternAt(0, 3).toString('hex'), '000d1a');
  assert.equal(patternAt(65521 + 128, 1)[0], (128 * 13 + 1) & 0xff);
  const big = Buffer.concat([patternAt(1000, 65521), patternAt(1000 + 65521, 5000)]);
  assert.ok(matchesPattern(1000, big));
  big.writeUInt8(big.readUInt8(69999) ^ 1, 69999);
  assert.ok(!matchesPattern(1000, big));
});
