// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { PassThrough, Writable } from 'node:stream';
import { test } from 'node:test';
import { forward } from './relay.ts';

function pump(source: PassThrough, sink: Writable, coalesce: boolean): void {
  forward(source, sink, { count: () => undefined, coalesce });
  source.once('end', () => sink.end());
}

function recorder(): { sink: Writable; batches: number[] } {
  const batches: number[] = [];
  const sink = new Writable({
    write(_chunk, _enc, cb) { batches.push(1); cb(); },
    writev(chunks, cb) { batches.push(chunks.length); cb(); },
  });
  return { sink, batches };
}

test('chunks that arrive in one loop turn leave in one batch; a later turn starts another', async () => {
  const source = new PassThrough();
  const { sink, batches } = recorder();
  pump(source, sink, true);
  source.write('a');
  source.write('b');
  source.write('c');
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  source.write('d');
  source.end();
  await new Promise((r) => sink.once('finish', r));
  assert.deepEqual(batches, [3, 1]);
});

test('without it every chunk is its own write (the control)', async () => {
  const source = new PassThrough();
  const { sink, batches } = recorder();
  pump(source, sink, false);
  source.write('a');
  source.write('b');
  source.write('c');
  source.end();
  await new Promise((r) => sink.once('finish', r));
  assert.deepEqual(batches, [1, 1, 1]);
});

test('an end before the check phase flushes everything and leaves nothing corked', async () => {
  const source = new PassThrough();
  const { sink, batches } = recorder();
  pump(source, sink, true);
  source.write('a');
  source.end('b');
  await new Promise((r) => sink.once('finish', r));
  assert.equal(batches.reduce((x, y) => x + y, 0), 2);
  assert.equal(sink.writableCorked, 0);
});
