// SPDX-License-Identifier: Apache-2.0
// Sockets created inside another network namespace, by fd or by path, and
// the calling thread always back in its own namespace afterwards.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import net from 'node:net';
import { test } from 'node:test';
import { connectTcp, listenTcp, native, netnsCookie, openNetns } from '../lib/index.ts';
import { needsRoot, suiteNetns } from './netns-fixture.ts';

const ns = suiteNetns();
const execFileAsync = promisify(execFile);

function ownCookie(): bigint {
  const fd = native.createSocket(4, 'stream', -1);
  try {
    return native.netnsCookie(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function connected(s: net.Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
}

test('a listener created by netns path lives in that namespace only', { skip: needsRoot }, async () => {
  const home = ownCookie();
  const server = await listenTcp({ address: '127.0.0.1', port: 0, netns: ns().path }, (s) => s.end('from-ns'));
  const { port } = server.address() as net.AddressInfo;
  assert.notEqual(netnsCookie(server), home, 'listener is not in our namespace');
  assert.equal(ownCookie(), home, 'we are back in our own namespace');

  // From our namespace the port is closed (loopback of the root namespace).
  const outside = net.connect(port, '127.0.0.1');
  await assert.rejects(connected(outside), { code: 'ECONNREFUSED' });

  // From a socket created in the same namespace (by fd this time) it answers.
  const nsfd = openNetns(ns().path);
  try {
    const inside = connectTcp({ address: '127.0.0.1', port, netns: nsfd });
    assert.equal(netnsCookie(inside), netnsCookie(server));
    const chunks: Buffer[] = [];
    inside.on('data', (d: Buffer) => chunks.push(d));
    await new Promise((r) => inside.once('close', r));
    assert.equal(Buffer.concat(chunks).toString(), 'from-ns');
  } finally {
    fs.closeSync(nsfd);
  }
  server.close();
});

test('a process inside the namespace reaches our in-namespace listener', { skip: needsRoot }, async () => {
  const server = await listenTcp({ address: '::1', port: 0, netns: ns().path }, (s) => s.end('v6'));
  const { port } = server.address() as net.AddressInfo;
  // bash's /dev/tcp: a real client process started in the namespace by `ip netns exec`.
  const { stdout } = await execFileAsync('ip', ['netns', 'exec', ns().name, 'bash', '-c', `exec 3<>/dev/tcp/::1/${port}; cat <&3`], { timeout: 5000 });
  assert.equal(stdout, 'v6');
  server.close();
});

test('namespace switching survives many sockets without leaking fds', { skip: needsRoot }, () => {
  const home = ownCookie();
  const nsfd = openNetns(ns().path);
  const fdsBefore = fs.readdirSync('/proc/self/fd').length;
  let nsCookie: bigint | undefined;
  for (let i = 0; i < 200; i++) {
    const fd = native.createSocket(i % 2 === 0 ? 4 : 6, 'stream', nsfd);
    const c = native.netnsCookie(fd);
    nsCookie ??= c;
    assert.equal(c, nsCookie);
    fs.closeSync(fd);
  }
  assert.equal(fs.readdirSync('/proc/self/fd').length, fdsBefore);
  fs.closeSync(nsfd);
  assert.notEqual(nsCookie, home);
  assert.equal(ownCookie(), home);
});
