// SPDX-License-Identifier: Apache-2.0
// Wrong arguments, closed fds and missing paths give typed errors, never a crash.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { test } from 'node:test';
import { connectTcp, listenTcp, native, openNetns, originalDst, SeqpacketSocket } from '../lib/index.ts';

/** Calls the addon with arguments its types forbid, as plain JS could. */
const loose = native as unknown as Record<string, (...args: unknown[]) => unknown>;
const call = (name: string, ...args: unknown[]): unknown => loose[name]?.(...args);

test('wrong argument types throw a usage TypeError', () => {
  const cases: [string, unknown[]][] = [
    ['openNetns', [42]],
    ['createSocket', [5, 'stream', -1]],
    ['createSocket', [4, 'raw', -1]],
    ['createSocket', [4, 'stream', 'x']],
    ['setIntOpt', ['fd', 1, 2, 3]],
    ['setIntOpt', [-1, 1, 2, 3]],
    ['getIntOpt', [1.5, 1, 2]],
    ['bind', [0, 123, 80]],
    ['bind', [0, '127.0.0.1', 70000]],
    ['sendMessage', [0, 'not a buffer', -1]],
    ['recvMessage', [0, 0]],
    ['seqpacketConnect', [undefined]],
  ];
  for (const [fn, args] of cases) {
    assert.throws(() => call(fn, ...args), (e: Error & { code?: string }) => {
      assert.ok(e instanceof TypeError, `${fn}: ${e.message}`);
      assert.match(e.message, /^Usage: /);
      assert.equal(e.code, 'ERR_INVALID_ARG_TYPE');
      return true;
    }, `${fn}(${JSON.stringify(args)})`);
  }
  assert.throws(() => new native.Poller(0, 'nope' as unknown as () => void), /^TypeError: Usage: new Poller/);
});

test('a bad address is a TypeError naming it', () => {
  const fd = native.createSocket(4, 'stream', -1);
  try {
    assert.throws(() => { native.bind(fd, 'not-an-ip', 0); }, { name: 'TypeError', code: 'ERR_INVALID_IP_ADDRESS', message: /'not-an-ip'/ });
  } finally {
    fs.closeSync(fd);
  }
  assert.throws(() => connectTcp({ address: 'example', port: 1 }), { name: 'TypeError', message: /not an IP address: 'example'/ });
  assert.throws(() => connectTcp({ address: '127.0.0.1', port: 1, localAddress: '::1' }), /not of the same family/);
  assert.throws(() => connectTcp({ address: '127.0.0.1', port: -1 }), RangeError);
});

test('closed fds give EBADF with the syscall named', () => {
  const fd = native.createSocket(4, 'stream', -1);
  fs.closeSync(fd);
  assert.throws(() => { native.setIntOpt(fd, native.constants.SOL_SOCKET, native.constants.SO_MARK, 1); }, { code: 'EBADF', syscall: 'setsockopt', errno: 9 });
  assert.throws(() => native.netnsCookie(fd), { code: 'EBADF' });
  assert.throws(() => native.originalDst(fd), { code: 'EBADF', syscall: 'getsockname' });
  assert.throws(() => native.recvMessage(fd, 16), { code: 'EBADF', syscall: 'recvmsg' });
});

test('a netns path that does not exist gives ENOENT naming the path', () => {
  assert.throws(() => openNetns('/run/netns/skein-does-not-exist'), { code: 'ENOENT', syscall: 'open', message: /skein-does-not-exist/ });
  assert.throws(() => connectTcp({ address: '127.0.0.1', port: 9, netns: '/run/netns/skein-does-not-exist' }), { code: 'ENOENT' });
});

test('an fd that is not a netns gives EINVAL and leaves us in our own netns', () => {
  const probe = native.createSocket(4, 'stream', -1);
  const before = native.netnsCookie(probe);
  fs.closeSync(probe);
  const devnull = fs.openSync('/dev/null', 'r');
  try {
    assert.throws(() => native.createSocket(4, 'stream', devnull), { code: 'EINVAL', syscall: 'setns', message: /not a network namespace/ });
  } finally {
    fs.closeSync(devnull);
  }
  const fd = native.createSocket(4, 'stream', -1);
  assert.equal(native.netnsCookie(fd), before);
  fs.closeSync(fd);
});

test('SO_ORIGINAL_DST on a socket nobody redirected gives ENOENT', async () => {
  const server = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const { port } = server.address() as net.AddressInfo;
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const client = net.connect(port, '127.0.0.1');
  const conn = await accepted;
  assert.throws(() => originalDst(conn), { code: 'ENOENT', message: /no NAT entry/ });
  client.destroy();
  conn.destroy();
  server.close();
});

test('listening on a port in use is an EADDRINUSE error, not a crash', async () => {
  const first = await listenTcp({ address: '127.0.0.1', port: 0 });
  const { port } = first.address() as net.AddressInfo;
  await assert.rejects(listenTcp({ address: '127.0.0.1', port }), { code: 'EADDRINUSE', syscall: 'bind' });
  first.close();
});

test('connecting a SEQPACKET socket to nothing gives ENOENT', () => {
  assert.throws(() => SeqpacketSocket.connect('/tmp/skein-no-such-socket'), { code: 'ENOENT', syscall: 'connect' });
  assert.throws(() => SeqpacketSocket.connect('x'.repeat(200)), { code: 'ENAMETOOLONG' });
});
