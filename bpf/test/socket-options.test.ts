// SPDX-License-Identifier: Apache-2.0
// SO_MARK, SO_REUSEPORT, IP_TRANSPARENT, IP_FREEBIND and TCP_NODELAY on
// sockets that Node then owns, read back from the kernel.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { connectTcp, constants as c, getSocketOption, listenTcp, setSocketOptions } from '../lib/index.ts';
import { needsRoot, suiteNetns } from './netns-fixture.ts';

const ns = suiteNetns();

const ZTUNNEL_MARK = 0x539;

test('options set at creation are on the socket Node owns (IPv4 and IPv6)', { skip: needsRoot }, async () => {
  for (const address of ['127.0.0.1', '::1']) {
    const six = address.includes(':');
    const server = await listenTcp({ address, port: 0, netns: ns().path, mark: ZTUNNEL_MARK, reusePort: true, transparent: true, freebind: true, noDelay: true });
    assert.equal(getSocketOption(server, c.SOL_SOCKET, c.SO_MARK), ZTUNNEL_MARK);
    assert.equal(getSocketOption(server, c.SOL_SOCKET, c.SO_REUSEPORT), 1);
    assert.equal(getSocketOption(server, c.SOL_SOCKET, c.SO_REUSEADDR), 1, 'a restarted listener binds despite TIME_WAIT');
    assert.equal(getSocketOption(server, six ? c.SOL_IPV6 : c.SOL_IP, six ? c.IPV6_TRANSPARENT : c.IP_TRANSPARENT), 1);
    assert.equal(getSocketOption(server, six ? c.SOL_IPV6 : c.SOL_IP, six ? c.IPV6_FREEBIND : c.IP_FREEBIND), 1);
    assert.equal(getSocketOption(server, c.IPPROTO_TCP, c.TCP_NODELAY), 1);
    server.close();
  }
});

test('options can be changed on an established Node socket', { skip: needsRoot }, async () => {
  const server = await listenTcp({ address: '127.0.0.1', port: 0, netns: ns().path }, (s) => s.resume());
  const { port } = server.address() as net.AddressInfo;
  const client = connectTcp({ address: '127.0.0.1', port, netns: ns().path });
  await new Promise((r) => client.once('connect', r));
  assert.equal(getSocketOption(client, c.SOL_SOCKET, c.SO_MARK), 0);
  setSocketOptions(client, { mark: 0xfff, noDelay: true });
  assert.equal(getSocketOption(client, c.SOL_SOCKET, c.SO_MARK), 0xfff);
  assert.equal(getSocketOption(client, c.IPPROTO_TCP, c.TCP_NODELAY), 1);
  client.destroy();
  server.close();
});

test('SO_REUSEPORT lets two listeners share a port; without it the second fails', { skip: needsRoot }, async () => {
  const a = await listenTcp({ address: '127.0.0.1', port: 0, netns: ns().path, reusePort: true });
  const { port } = a.address() as net.AddressInfo;
  const b = await listenTcp({ address: '127.0.0.1', port, netns: ns().path, reusePort: true });
  await assert.rejects(listenTcp({ address: '127.0.0.1', port, netns: ns().path }), { code: 'EADDRINUSE' });
  a.close();
  b.close();
});

test('IP_TRANSPARENT allows binding a source address the namespace does not have', { skip: needsRoot }, async () => {
  // 203.0.113.7 (TEST-NET-3) is on no interface of the namespace; nothing is sent.
  const server = await listenTcp({ address: '127.0.0.1', port: 0, netns: ns().path });
  const { port } = server.address() as net.AddressInfo;
  assert.throws(() => connectTcp({ address: '127.0.0.1', port, netns: ns().path, localAddress: '203.0.113.7' }), { code: 'EADDRNOTAVAIL', syscall: 'bind' });
  const s = connectTcp({ address: '127.0.0.1', port, netns: ns().path, localAddress: '203.0.113.7', transparent: true });
  assert.equal(getSocketOption(s, c.SOL_IP, c.IP_TRANSPARENT), 1);
  s.on('error', () => { /* the spoofed source has no route back; only the bind matters */ });
  s.destroy();
  const f = connectTcp({ address: '127.0.0.1', port, netns: ns().path, localAddress: '203.0.113.8', freebind: true });
  assert.equal(getSocketOption(f, c.SOL_IP, c.IP_FREEBIND), 1);
  f.on('error', () => { /* as above */ });
  f.destroy();
  server.close();
});

test('TCP keepalive: SO_KEEPALIVE with idle time, probe interval and probe count, on created and adopted sockets; bad values refused', { skip: needsRoot }, async () => {
  const keepalive = { timeSeconds: 180, intervalSeconds: 60, retries: 9 };
  const server = await listenTcp({ address: '127.0.0.1', port: 0, netns: ns().path }, (s) => s.resume());
  const { port } = server.address() as net.AddressInfo;
  const client = connectTcp({ address: '127.0.0.1', port, netns: ns().path, keepalive });
  await new Promise((r) => client.once('connect', r));
  const read = (s: net.Socket): number[] => [
    getSocketOption(s, c.SOL_SOCKET, c.SO_KEEPALIVE), getSocketOption(s, c.IPPROTO_TCP, c.TCP_KEEPIDLE),
    getSocketOption(s, c.IPPROTO_TCP, c.TCP_KEEPINTVL), getSocketOption(s, c.IPPROTO_TCP, c.TCP_KEEPCNT),
  ];
  assert.deepEqual(read(client), [1, 180, 60, 9]);
  const other = connectTcp({ address: '127.0.0.1', port, netns: ns().path });
  await new Promise((r) => other.once('connect', r));
  assert.equal(read(other)[0], 0, 'off unless asked');
  setSocketOptions(other, { keepalive: { timeSeconds: 5, intervalSeconds: 2, retries: 3 } });
  assert.deepEqual(read(other), [1, 5, 2, 3]);
  assert.throws(() => { setSocketOptions(other, { keepalive: { timeSeconds: 0, intervalSeconds: 2, retries: 3 } }); }, RangeError);
  assert.throws(() => { setSocketOptions(other, { keepalive: { timeSeconds: 5, intervalSeconds: 2, retries: 128 } }); }, RangeError);
  client.destroy();
  other.destroy();
  server.close();
});
