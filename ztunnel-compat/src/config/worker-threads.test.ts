// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_WORKER_THREADS, workerThreads } from './worker-threads.ts';
import type { CpuFacts } from './worker-threads.ts';

const facts = (over: Partial<CpuFacts>): CpuFacts => ({
  setting: undefined, concurrency: undefined, cpuLimit: undefined, resourceLimit: undefined, resourceRequest: undefined, cores: 16, ...over,
});

test('ZTUNNEL_WORKER_THREADS: a number, 0 for every CPU, or a percentage of ZTUNNEL_CPU_LIMIT (else the machine\'s CPUs), rounded up', () => {
  assert.equal(workerThreads(facts({ setting: '3' })), 3);
  assert.equal(workerThreads(facts({ setting: '0' })), 16);
  assert.equal(workerThreads(facts({ setting: '0', cpuLimit: 6 })), 6);
  assert.equal(workerThreads(facts({ setting: '25%' })), 4);
  assert.equal(workerThreads(facts({ setting: '25%', cpuLimit: 3 })), 1);
  assert.equal(workerThreads(facts({ setting: '33.3%', cpuLimit: 10 })), 4);
  assert.equal(workerThreads(facts({ setting: '100%', cores: 200 })), MAX_WORKER_THREADS, 'capped');
  for (const bad of ['0%', '101%', 'x%', 'two', '-1', '1.5']) {
    const r = workerThreads(facts({ setting: bad }));
    assert.equal(typeof r, 'object', bad);
  }
});

test('ProxyConfig concurrency when the variable is unset (0: every CPU); the variable wins', () => {
  assert.equal(workerThreads(facts({ concurrency: 5 })), 5);
  assert.equal(workerThreads(facts({ concurrency: 0, cpuLimit: 8 })), 8);
  assert.equal(workerThreads(facts({ concurrency: 5, setting: '2' })), 2);
});

test('default: the pod\'s CPU limit, else a quarter of the CPUs; never below 2 or the pod\'s CPU request', () => {
  assert.equal(workerThreads(facts({ cores: 2 })), 2, 'this machine: as before');
  assert.equal(workerThreads(facts({ cores: 64 })), 16);
  assert.equal(workerThreads(facts({ cores: 64, cpuLimit: 10 })), 3, 'a quarter of ZTUNNEL_CPU_LIMIT');
  assert.equal(workerThreads(facts({ cores: 64, resourceLimit: 1 })), 2);
  assert.equal(workerThreads(facts({ cores: 64, resourceLimit: 6 })), 6);
  assert.equal(workerThreads(facts({ cores: 64, resourceLimit: 3, resourceRequest: 5 })), 5);
  assert.equal(workerThreads(facts({ cores: 8, resourceRequest: 4 })), 4);
});
