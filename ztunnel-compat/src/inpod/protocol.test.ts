// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeAck, decodeHello, decodeRequest, encodeAck, encodeHello, encodeRequest, ZdsDecodeError, type WorkloadRequest } from './protocol.ts';

test('requests round-trip', () => {
  const cases: WorkloadRequest[] = [
    { kind: 'add', uid: 'u1', workloadInfo: { name: 'p', namespace: 'ns', serviceAccount: 'sa' } },
    { kind: 'add', uid: 'u2', workloadInfo: undefined },
    { kind: 'keep', uid: 'u3' },
    { kind: 'del', uid: 'u4' },
    { kind: 'snapshotSent' },
  ];
  for (const c of cases) assert.deepEqual(decodeRequest(encodeRequest(c)), c);
});

test('field numbers match istio-cni on the wire', () => {
  // Del is field 2 carrying DelWorkload.uid in *its* field 2 (not 1).
  assert.deepEqual([...encodeRequest({ kind: 'del', uid: 'a' })], [0x12, 0x03, 0x12, 0x01, 0x61]);
  // Keep is field 5; SnapshotSent field 3; Hello{version: V1}.
  assert.deepEqual([...encodeRequest({ kind: 'keep', uid: 'a' })], [0x2a, 0x03, 0x0a, 0x01, 0x61]);
  assert.deepEqual([...encodeRequest({ kind: 'snapshotSent' })], [0x1a, 0x00]);
  assert.deepEqual([...encodeHello()], [0x08, 0x01]);
  assert.deepEqual([...encodeAck('')], [0x0a, 0x00]);
  assert.deepEqual(decodeHello(Buffer.from([0x08, 0x01])), { version: 1 });
  assert.deepEqual(decodeAck(encodeAck('bind failed')), { error: 'bind failed' });
});

test('garbage and empty payloads are decode errors', () => {
  assert.throws(() => decodeRequest(Buffer.from([0xff, 0xff, 0xff])), ZdsDecodeError);
  assert.throws(() => decodeRequest(Buffer.alloc(0)), /no payload/);
  assert.throws(() => decodeAck(Buffer.alloc(0)), /without ack/);
});
