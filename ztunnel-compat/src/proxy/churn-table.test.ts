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

test('add goes round its keys past one held all along, and refuses more than it has', () => {
  const t = new ChurnTable<{ n: number }>(4);
  const held = t.add({ n: -1 }); // a connection that stays open
  const seen = new Set<number>();
  for (let n = 0; n < 20; n++) {
    const k = t.add({ n });
    assert.notEqual(k, held, `add ${n} gave the held key`);
    assert.ok(k >= 1 && k <= 4, `key ${k} is out of 1…4`);
    seen.add(k);
    assert.equal(t.get(k)?.n, n);
    t.delete(k);
  }
  assert.deepEqual([...seen].sort(), [2, 3, 4]); // went round, more than once
  assert.equal(t.get(held)?.n, -1);
  for (let n = 0; n < 3; n++) t.add({ n });
  assert.throws(() => t.add({ n: 3 }), /at most 4 keys/);
  assert.equal(t.size, 4);
  t.delete(held);
  assert.equal(t.add({ n: 4 }), held); // free again, so given again
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
