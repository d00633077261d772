// SPDX-License-Identifier: Apache-2.0
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { flat, Interner, str } from './intern.ts';

test('flat keeps the exact text, including escapes and lone surrogates', () => {
  for (const s of ['', 'a', 'Kubernetes//Pod/ns/name', 'quote"back\\slash\nnl', '\u0000\u001f', '\ud800x', 'ü€😀']) {
    assert.equal(flat(s), s);
  }
});

test('str returns one shared copy for equal strings, and "" for empty or missing', () => {
  const a = str(['name', 'space'].join(''));
  const b = str('names' + 'pace');
  assert.equal(a, 'namespace');
  assert.equal(a, b);
  assert.equal(str(undefined), '');
  assert.equal(str(''), '');
});

test('an interner returns the stored value, and starts over past its bound', () => {
  const t = new Interner<{ v: string }>(2);
  const one = t.get('1', (k) => ({ v: k }));
  assert.equal(t.get('1', () => ({ v: 'other' })), one, 'a hit does not call make');
  t.get('2', (k) => ({ v: k }));
  assert.equal(t.size, 2);
  t.get('3', (k) => ({ v: k }));
  assert.equal(t.size, 1, 'cleared when full');
  assert.notEqual(t.get('1', (k) => ({ v: k })), one);
});
