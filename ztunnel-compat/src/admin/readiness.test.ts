// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Readiness } from './readiness.ts';

test('ready once every registered task is done', () => {
  const r = new Readiness();
  const xds = r.register('state manager');
  const zds = r.register('workload proxy manager');
  assert.deepEqual(r.pending, ['state manager', 'workload proxy manager']);
  xds();
  zds();
  assert.equal(r.ready, true);
});

test('a watched condition can make a ready proxy pending again, and is listed once', () => {
  const r = new Readiness();
  let pendingPods = 0;
  const snapshot = r.register('workload proxy manager');
  r.watch('workload proxy manager', () => pendingPods > 0);
  pendingPods = 1;
  assert.deepEqual(r.pending, ['workload proxy manager']);
  snapshot();
  assert.deepEqual(r.pending, ['workload proxy manager'], 'the snapshot is in, but a pod is still pending');
  pendingPods = 0;
  assert.equal(r.ready, true);
  pendingPods = 2;
  assert.equal(r.ready, false);
});
