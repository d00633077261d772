// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChurnTable } from './churn-table.ts';

test('a churn table keeps entries by key as a Map does: set, get, has, delete, size, keys, values, clear', () => {
  const t = new ChurnTable<string>();
  t.set(7, 'a');
  t.set(3, 'b');
  t.set(7, 'c'); // replaces, not a second entry
  assert.equal(t.size, 2);
  assert.equal(t.get(7), 'c');
  assert.equal(t.has(3), true);
  assert.equal(t.get(4), undefined);
  assert.deepEqual(t.keys().sort((x, y) => x - y), [3, 7]);
  assert.deepEqual(t.values().sort(), ['b', 'c']);
  assert.equal(t.delete(3), true);
  assert.equal(t.delete(3), false, 'deleting twice is a no-op');
  assert.equal(t.size, 1);
  t.clear();
  assert.equal(t.size, 0);
  assert.deepEqual(t.values(), []);
});

test('add gives each value a key of its own, never one in use; the key removes it', () => {
  const t = new ChurnTable<{ n: number }>();
  const keys = Array.from({ length: 100 }, (_, n) => t.add({ n }));
  assert.equal(new Set(keys).size, 100);
  for (const [n, k] of keys.entries()) assert.equal(t.get(k)?.n, n);
  t.set(101, { n: -1 }); // a key taken by hand is skipped by add
  assert.notEqual(t.add({ n: 100 }), 101);
  for (const k of keys) t.delete(k);
  assert.equal(t.size, 2);
});

test('a churn table under the churn of a proxy (16 in flight, 100,000 through) ends empty and keeps its count', () => {
  const t = new ChurnTable<number>();
  const inFlight: number[] = [];
  for (let i = 0; i < 100_000; i++) {
    inFlight.push(t.add(i));
    if (inFlight.length > 16) t.delete(inFlight.shift() ?? 0);
  }
  assert.equal(t.size, 16);
  for (const k of inFlight) t.delete(k);
  assert.equal(t.size, 0);
  assert.deepEqual(t.keys(), []);
});
