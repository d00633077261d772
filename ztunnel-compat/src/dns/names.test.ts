// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { candidateHosts, wildcardsOf } from './names.ts';

test('short Kubernetes names are completed from the client\'s namespace', () => {
  assert.deepEqual(candidateHosts('echo', 'default', 'cluster.local'), ['echo', 'echo.default.svc.cluster.local']);
  assert.deepEqual(candidateHosts('echo.other', 'default', 'cluster.local'), ['echo.other', 'echo.other.svc.cluster.local']);
  assert.deepEqual(candidateHosts('echo.other.svc', 'default', 'cluster.local'), ['echo.other.svc', 'echo.other.svc.cluster.local']);
  // Three labels not ending in svc, and longer names, are taken as they are.
  assert.deepEqual(candidateHosts('api.example.com', 'default', 'cluster.local'), ['api.example.com']);
});

test('a search domain a stub resolver appended is taken off again; case and the root dot do not matter', () => {
  // Each search domain is tried (as ztunnel does); only names a service has can match.
  assert.deepEqual(candidateHosts('API.example.com.default.svc.cluster.local.', 'default', 'cluster.local'), [
    'api.example.com.default.svc.cluster.local', 'api.example.com', 'api.example.com.default', 'api.example.com.default.svc',
  ]);
  assert.deepEqual(candidateHosts('echo.default.svc.cluster.local', 'default', 'cluster.local'), [
    'echo.default.svc.cluster.local', 'echo', 'echo.default', 'echo.default.svc',
  ]);
  assert.deepEqual(candidateHosts('', 'default', 'cluster.local'), []);
});

test('the wildcard hosts covering a name, nearest first', () => {
  assert.deepEqual(wildcardsOf('www.api.example.com'), ['*.api.example.com', '*.example.com', '*.com']);
  assert.deepEqual(wildcardsOf('localhost'), []);
});
