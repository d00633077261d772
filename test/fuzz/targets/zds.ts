// SPDX-License-Identifier: Apache-2.0
// ZDS messages (ztunnel-compat/src/inpod/protocol.ts): the daemon decodes
// istio-cni's WorkloadRequests; hello and ack are decoded on the CNI side
// (our double) from the same bytes. Declared error: ZdsDecodeError. Invariant: a decoded request
// re-encodes to a message that decodes to the same value.
import assert from 'node:assert/strict';
import { decodeAck, decodeHello, decodeRequest, encodeAck, encodeHello, encodeRequest, ZDS_MAX_MESSAGE, ZdsDecodeError } from '@skein/ztunnel-compat/inpod/protocol';
import { invariant, type FuzzTarget } from '../target.ts';

export const target: FuzzTarget = {
  name: 'zds',
  parser: 'inpod/protocol.ts decodeRequest/decodeHello/decodeAck',
  maxLen: ZDS_MAX_MESSAGE,
  declared: [ZdsDecodeError],
  // As inpod/protocol.test.ts and the CNI double build them.
  seeds: () => [
    encodeRequest({ kind: 'add', uid: 'uid-1', workloadInfo: { name: 'web', namespace: 'default', serviceAccount: 'web-sa' } }),
    encodeRequest({ kind: 'add', uid: 'uid-2', workloadInfo: undefined }),
    encodeRequest({ kind: 'keep', uid: 'uid-3' }),
    encodeRequest({ kind: 'del', uid: 'uid-4' }),
    encodeRequest({ kind: 'snapshotSent' }),
    encodeHello(),
    encodeAck(''),
    encodeAck('netns gone'),
  ],
  run(data) {
    let request;
    try {
      request = decodeRequest(data);
    } catch (err) {
      if (!(err instanceof ZdsDecodeError)) throw err;
    }
    if (request !== undefined) {
      invariant(typeof (request as { uid?: unknown }).uid === 'string' || request.kind === 'snapshotSent', `decoded a ${request.kind} without a string uid`);
      try {
        assert.deepEqual(decodeRequest(encodeRequest(request)), request);
      } catch (err) {
        invariant(false, `WorkloadRequest does not round-trip: ${(err as Error).message}`);
      }
    }
    try {
      decodeHello(data);
    } catch (err) {
      if (!(err instanceof ZdsDecodeError)) throw err;
    }
    decodeAck(data);
  },
};
