// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { test } from 'node:test';
import { relay } from './relay.ts';

async function pairOverTcp(): Promise<{ client: net.Socket; server: net.Socket; close: () => void }> {
  const srv = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => srv.once('connection', r));
  const client = net.connect({ port: (srv.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  return { client, server: await accepted, close: () => { srv.close(); } };
}

test('bytes flow both ways intact, counted, with half-close relayed', async () => {
  // app ⇄ [proxy: left ⇄ right] ⇄ upstream
  const down = await pairOverTcp();
  const up = await pairOverTcp();
  const done = relay(down.server, up.client);
  const payload = randomBytes(4 * 1024 * 1024);
  const echoed: Buffer[] = [];
  up.server.on('data', (d: Buffer) => echoed.push(d));
  up.server.once('end', () => {
    // The upstream saw the client's FIN and still answers: half-close works.
    up.server.end(Buffer.from('bye'));
  });
  const back: Buffer[] = [];
  down.client.on('data', (d: Buffer) => back.push(d));
  down.client.end(payload);
  const r = await done;
  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  assert.equal(sha(Buffer.concat(echoed)), sha(payload));
  assert.deepEqual({ aToB: r.aToB, bToA: r.bToA, error: r.error }, { aToB: payload.length, bToA: 3, error: undefined });
  await new Promise((res) => down.client.once('close', res));
  assert.equal(Buffer.concat(back).toString(), 'bye');
  down.close();
  up.close();
});

test('a reset on one side tears the other down and reports the error', async () => {
  const down = await pairOverTcp();
  const up = await pairOverTcp();
  const done = relay(down.server, up.client);
  down.client.on('error', () => undefined);
  up.server.resetAndDestroy();
  const r = await done;
  assert.ok(r.error !== undefined);
  // The downstream peer is told too: its connection ends.
  await new Promise((res) => down.client.once('end', res));
  down.client.destroy();
  down.close();
  up.close();
});
