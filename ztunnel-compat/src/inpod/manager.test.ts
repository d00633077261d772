// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { WorkloadProxyManager, type PodProxy } from './manager.ts';

const info = (name: string): { name: string; namespace: string; serviceAccount: string } => ({ name, namespace: 'default', serviceAccount: name });

test('a retry while a pod is still starting joins that start: one proxy per pod, and every proxy started is stopped', async () => {
  const starts = new Map<string, number>();
  const stopped: string[] = [];
  let failA = true;
  let releaseB: () => void = () => undefined;
  const bGoes = new Promise<void>((resolve) => { releaseB = resolve; });
  const m = new WorkloadProxyManager({
    retryMs: 20,
    factory: {
      start: async (uid): Promise<PodProxy> => {
        starts.set(uid, (starts.get(uid) ?? 0) + 1);
        if (uid === 'a' && failA) {
          failA = false;
          throw new Error('EADDRINUSE');
        }
        if (uid === 'b') await bGoes; // a slow start: binding in the pod's netns
        return { stop: () => { stopped.push(uid); return Promise.resolve(); } };
      },
    },
  });
  // /dev/null stands in for a netns fd: the manager only fstats and closes it.
  await assert.rejects(m.add('a', info('a'), fs.openSync('/dev/null', 'r')), /EADDRINUSE/);
  const b = m.add('b', info('b'), fs.openSync('/dev/null', 'r'));
  await new Promise((r) => setTimeout(r, 100)); // the retry timer fires while b is starting
  assert.equal(m.status().find((p) => p.uid === 'a')?.state, 'running', 'a was retried');
  releaseB();
  await b;
  assert.equal(starts.get('b'), 1, 'b started once');
  assert.deepEqual(m.status().map((p) => p.state), ['running', 'running']);
  await m.close();
  assert.deepEqual(stopped.sort(), ['a', 'b'], 'every proxy started was stopped');
});
