// SPDX-License-Identifier: Apache-2.0
// The engine told to use the kernel module (kmod: true) on a kernel where
// the module's ULP cannot be set (this machine's: no modules): each tunnel
// is given back to the pooled userspace path before any byte of TLS, and
// still carries its bytes. The module's own path runs in the VM lab
// (test/vm/engine-client.ts, from test/vm/kmod.test.ts).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as netConnect, createServer as createNetServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { hboneEngineUnavailable } from '@skein/bpf';
import { skipUnless } from '../../../../test/skips.ts';
import { NativeHboneClient } from './native-client.ts';
import { certs, roundTrip, startServer } from './testing.ts';
import type { Certs, Harness } from './testing.ts';

const skip = skipUnless({ what: 'the native HBONE engine', missing: hboneEngineUnavailable(), impossible: false });
// Where the module is in fact loaded, the tunnel would be handed over: this test is about its absence.
const moduleHere = ((): boolean => {
  try {
    return readFileSync('/sys/module/skein_hbone/initstate', 'utf8').trim() === 'live';
  } catch {
    return false;
  }
})();

let c: Certs;
let h: Harness;
let client: NativeHboneClient;
let pods: Server;
const accepted: Socket[] = [];

before(async () => {
  if (skip !== false || moduleHere) return;
  c = await certs();
  h = await startServer(c.server);
  client = new NativeHboneClient({ workers: 1, kmod: true });
  pods = createNetServer({ allowHalfOpen: true }, (s) => { accepted.push(s); });
  await new Promise<void>((resolve) => { pods.listen(0, '127.0.0.1', resolve); });
});

after(async () => {
  if (skip !== false || moduleHere) return;
  client.close();
  await new Promise<void>((resolve) => { pods.close(() => { resolve(); }); });
  await h.close();
});

test('kmod: true without the module: declined, carried by the pooled path, bytes intact', { skip: skip !== false ? skip : moduleHere ? 'the module is loaded here' : false, timeout: 30_000 }, async () => {
  for (let i = 0; i < 2; i++) {
    const app = netConnect({ host: '127.0.0.1', port: (pods.address() as AddressInfo).port, allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => { app.once('connect', resolve); app.once('error', reject); });
    while (accepted.length === 0) await new Promise((r) => setTimeout(r, 2));
    const pod = accepted.shift() as Socket;
    const tunnel = await client.open(pod, { cert: c.client, expected: [c.serverId], upstream: { ip: '127.0.0.1', port: h.port }, authority: `127.0.0.1:${h.echo.port}` });
    const data = Buffer.alloc(256 * 1024, i + 1);
    const got = await roundTrip(app, data);
    assert.equal(got.bytes, data.length);
    const end = await tunnel.done;
    assert.equal(end.error, undefined);
    assert.equal(end.sent, data.length);
    assert.equal(end.recv, data.length);
  }
  const st = client.stats();
  assert.equal(st.kmodTunnels, 0);
  assert.equal(st.kmodDeclined, 2);
  // Given back, the two tunnels share one pooled session as any others.
  assert.equal(st.sessionsOpened, 1);
});
