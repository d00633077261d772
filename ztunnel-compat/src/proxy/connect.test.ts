// SPDX-License-Identifier: Apache-2.0
// Upstream connects end one way or another: connected, failed, closed by
// someone (a policy re-check), abandoned by the client, or timed out; every
// way but the first leaves the socket destroyed.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { connected, CONNECT_TIMEOUT_MS } from './connect.ts';

test('ztunnel\'s connect timeout is 10 s', () => {
  // ztunnel src/proxy.rs: const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
  assert.equal(CONNECT_TIMEOUT_MS, 10_000);
});

test('a socket that connects resolves with no error', async () => {
  const server = net.createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const s = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  assert.equal(await connected(s, 5000), undefined);
  assert.equal(s.destroyed, false);
  s.destroy();
  server.close();
});

test('a refused connect, a connect that never ends, one destroyed meanwhile, one whose client left: each an error, the socket destroyed', async () => {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise<void>((r) => probe.close(() => { r(); }));
  const refused = net.connect(port, '127.0.0.1');
  assert.match((await connected(refused, 5000))?.message ?? '', /ECONNREFUSED/);

  // A socket never told to connect stands in for a SYN nobody answers.
  const silent = new net.Socket();
  const t0 = Date.now();
  assert.equal((await connected(silent, 100))?.message, 'connection timed out after 100 ms');
  assert.ok(Date.now() - t0 >= 90);
  assert.ok(silent.destroyed);

  const revoked = new net.Socket();
  const pending = connected(revoked, 5000);
  revoked.destroy();
  assert.equal((await pending)?.message, 'closed before the connection was established');

  const left = new AbortController();
  const abandoned = new net.Socket();
  const waiting = connected(abandoned, 5000, left.signal);
  left.abort();
  assert.equal((await waiting)?.message, 'the client went away while connecting');
  assert.ok(abandoned.destroyed);
  const already = new net.Socket();
  assert.equal((await connected(already, 5000, left.signal))?.message, 'the client went away while connecting');
});
