// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { nameservers } from './resolv-conf.ts';

test('nameserver lines in order; zones dropped; comments and junk skipped', () => {
  const text = `# generated
search default.svc.cluster.local svc.cluster.local cluster.local
nameserver 10.96.0.10
 nameserver fe80::1%eth0
nameserver not-an-ip
;nameserver 1.1.1.1
options ndots:5
nameserver 10.96.0.11`;
  assert.deepEqual(nameservers(text), ['10.96.0.10', 'fe80::1', '10.96.0.11']);
  assert.deepEqual(nameservers(''), []);
});
