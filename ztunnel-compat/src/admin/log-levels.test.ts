// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LevelError, parseLevelDirectives } from './log-levels.ts';

test('level directives: a bare level, per-target levels in either form, and empty for "show only"', () => {
  assert.deepEqual(parseLevelDirectives(''), { scopes: new Map() });
  assert.deepEqual(parseLevelDirectives('debug'), { global: 'debug', scopes: new Map() });
  assert.deepEqual(parseLevelDirectives('info,access:debug, xds=trace'), { global: 'info', scopes: new Map([['access', 'debug'], ['xds', 'trace']]) });
  assert.deepEqual(parseLevelDirectives('access:off'), { scopes: new Map([['access', 'off']]) });
});

test('level directives: unknown levels and malformed targets are refused by name', () => {
  assert.throws(() => parseLevelDirectives('loud'), (e: Error) => e instanceof LevelError && /invalid level 'loud'/.test(e.message));
  assert.throws(() => parseLevelDirectives('access:loud'), /invalid level 'loud' for access/);
  assert.throws(() => parseLevelDirectives(':debug'), /invalid target ''/);
  assert.throws(() => parseLevelDirectives('Acc ess:debug'), /invalid target/);
});
