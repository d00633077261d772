// SPDX-License-Identifier: Apache-2.0
// The CNI double's ZDS side against a test client playing the node proxy:
// Hello, snapshot (Add with the netns fd / Keep, SnapshotSent), Add/Del
// afterwards, error acks, and the protocol errors istio-cni enforces.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { SeqpacketSocket } from '@skein/bpf';
import { decodeRequest, encodeAck, encodeHello, type WorkloadRequest } from '@skein/ztunnel-compat/inpod/protocol';
import { ZdsServer } from './zds-server.ts';

const needsRoot = process.getuid?.() === 0 ? false : 'needs root (network namespaces)';
let dir = '';
const nsNames: string[] = [];

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skein-zds-'));
  if (needsRoot) return;
  for (const n of ['a', 'b']) {
    const name = `skein-t${process.pid}-zds${n}`;
    execFileSync('ip', ['netns', 'add', name]);
    nsNames.push(name);
  }
});
after(() => {
  for (const n of nsNames) execFileSync('ip', ['netns', 'del', n]);
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Got { req: WorkloadRequest; fd: number | undefined }

/** The node proxy side, minimal: records requests, acks as told. */
class TestProxy {
  readonly socket: SeqpacketSocket;
  readonly got: Got[] = [];
  readonly #waiters: ((g: Got) => void)[] = [];
  ackError = '';
  autoAck = true;

  constructor(sockPath: string) {
    this.socket = SeqpacketSocket.connect(sockPath, { maxMessageSize: 1024 });
    this.socket.on('message', (data: Buffer, fd: number | undefined) => {
      const g = { req: decodeRequest(data), fd };
      this.got.push(g);
      if (this.autoAck) void this.socket.send(encodeAck(this.ackError));
      const w = this.#waiters.shift();
      if (w !== undefined) w(g);
    });
  }

  hello(): Promise<void> {
    return this.socket.send(encodeHello());
  }

  next(): Promise<Got> {
    return new Promise((r) => this.#waiters.push(r));
  }

  close(): void {
    for (const g of this.got) if (g.fd !== undefined) fs.closeSync(g.fd);
    this.got.length = 0;
    this.socket.close();
  }
}

const ino = (p: string | number): number => (typeof p === 'number' ? fs.fstatSync(p) : fs.statSync(p)).ino;
const info = (name: string): { name: string; namespace: string; serviceAccount: string } => ({ name, namespace: 'ns1', serviceAccount: 'sa1' });

test('snapshot: Add carries the pod netns fd, Keep has none, then SnapshotSent', { skip: needsRoot }, async () => {
  const [nsA] = nsNames.map((n) => `/run/netns/${n}`);
  assert.ok(nsA !== undefined);
  const server = new ZdsServer(path.join(dir, 'snap.sock'));
  await server.addPod({ uid: 'uid-a', info: info('a'), netnsPath: nsA });
  await server.addPod({ uid: 'uid-k', info: info('k') });
  const proxy = new TestProxy(server.path);
  await proxy.hello();
  await server.waitReady();
  assert.deepEqual(proxy.got.map((g) => g.req), [
    { kind: 'add', uid: 'uid-a', workloadInfo: info('a') },
    { kind: 'keep', uid: 'uid-k' },
    { kind: 'snapshotSent' },
  ]);
  const addFd = proxy.got[0]?.fd;
  assert.ok(addFd !== undefined, 'Add came with an fd');
  assert.equal(ino(addFd), ino(nsA), 'the fd is the pod\'s network namespace');
  assert.deepEqual(proxy.got.slice(1).map((g) => g.fd), [undefined, undefined]);
  assert.deepEqual(server.log.filter((l) => l.dir === 'recv').map((l) => l.what), ['hello v1', 'ack', 'ack', 'ack']);
  proxy.close();
  server.close();
});

test('after the snapshot: Add and Del one at a time, each acked; an error ack is returned', { skip: needsRoot }, async () => {
  const [, nsB] = nsNames.map((n) => `/run/netns/${n}`);
  assert.ok(nsB !== undefined);
  const server = new ZdsServer(path.join(dir, 'live.sock'));
  const proxy = new TestProxy(server.path);
  await proxy.hello();
  await server.waitReady();
  assert.deepEqual(await server.addPod({ uid: 'uid-b', info: info('b'), netnsPath: nsB }), ['']);
  const add = proxy.got.at(-1);
  assert.ok(add !== undefined);
  assert.equal(add.req.kind, 'add');
  assert.ok(add.fd !== undefined && ino(add.fd) === ino(nsB));
  assert.deepEqual(await server.removePod('uid-b'), ['']);
  assert.deepEqual(proxy.got.at(-1)?.req, { kind: 'del', uid: 'uid-b' });

  proxy.ackError = 'failed to start listeners: EADDRINUSE';
  assert.deepEqual(await server.addPod({ uid: 'uid-c', info: info('c'), netnsPath: nsB }), ['failed to start listeners: EADDRINUSE']);
  assert.ok(server.log.some((l) => l.what === 'ack error: failed to start listeners: EADDRINUSE'));
  proxy.close();
  server.close();
});

test('a missing Hello is a protocol error within the deadline', async () => {
  const server = new ZdsServer(path.join(dir, 'nohello.sock'), { deadlineMs: 100 });
  const errored = new Promise<Error>((r) => server.once('protocolError', r));
  const proxy = new TestProxy(server.path);
  const closed = new Promise((r) => proxy.socket.once('close', r));
  assert.match((await errored).message, /no ZdsHello within 100 ms/);
  await closed;
  proxy.close();
  server.close();
});

test('an unsolicited message from the proxy is a protocol error and closes the connection', async () => {
  const server = new ZdsServer(path.join(dir, 'unsol.sock'));
  const proxy = new TestProxy(server.path);
  await proxy.hello();
  await server.waitReady();
  const errored = new Promise<Error>((r) => server.once('protocolError', r));
  const closed = new Promise((r) => proxy.socket.once('close', r));
  await proxy.socket.send(encodeAck(''));
  assert.match((await errored).message, /unsolicited message/);
  await closed;
  assert.equal(server.connections, 0);
  proxy.close();
  server.close();
});

test('a proxy that never acks fails the exchange after the deadline', async () => {
  const server = new ZdsServer(path.join(dir, 'noack.sock'), { deadlineMs: 150 });
  const proxy = new TestProxy(server.path);
  await proxy.hello();
  await server.waitReady();
  proxy.autoAck = false;
  await assert.rejects(server.removePod('uid-x'), /no ack for del within 150 ms/);
  proxy.close();
  server.close();
});

test('at most 5 connections are accepted per second', async () => {
  const server = new ZdsServer(path.join(dir, 'rate.sock'));
  const proxies = Array.from({ length: 7 }, () => new TestProxy(server.path));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(server.connections, 5);
  assert.equal(server.log.filter((l) => l.what.startsWith('accept rate limit')).length, 2);
  for (const p of proxies) p.close();
  server.close();
});
