// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BufferPool, LARGE_READ, ReadBuffers, SMALL_READ } from './read-buffers.ts';

test('a buffer given back is handed out again; at most maxFree are kept', () => {
  const pool = new BufferPool(1024, 2);
  const [a, b, c] = [pool.take(), pool.take(), pool.take()];
  pool.give(a);
  pool.give(b);
  pool.give(c);
  assert.equal(pool.free, 2);
  const again = pool.take();
  assert.ok(again === b || again === a);
});

test('only whole buffers of the pool size come back (not slices, not strangers)', () => {
  const pool = new BufferPool(1024, 8);
  const mine = pool.take();
  pool.give(mine.subarray(0, 10));
  pool.give(mine.subarray(512));
  pool.give(Buffer.allocUnsafeSlow(2048));
  assert.equal(pool.free, 0);
  pool.give(mine);
  assert.equal(pool.free, 1);
});

test('a read that filled its buffer earns a large one; anything less, a small one', () => {
  const rb = new ReadBuffers();
  assert.equal(rb.next(0, 1).length, SMALL_READ, 'before any read');
  assert.equal(rb.next(SMALL_READ, SMALL_READ).length, LARGE_READ);
  assert.equal(rb.next(LARGE_READ, LARGE_READ).length, LARGE_READ);
  assert.equal(rb.next(100, LARGE_READ).length, SMALL_READ);
});

test('each size goes back to its own pool', () => {
  const rb = new ReadBuffers();
  rb.give(rb.large.take());
  rb.give(rb.small.take());
  assert.deepEqual([rb.large.free, rb.small.free], [1, 1]);
});
