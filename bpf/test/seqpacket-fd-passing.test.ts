// SPDX-License-Identifier: Apache-2.0
// SOCK_SEQPACKET with SCM_RIGHTS: message boundaries kept, exactly one fd
// per message, truncation refused, and the event loop never blocked.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { native, SeqpacketServer, SeqpacketSocket } from '../lib/index.ts';
import { openFdCount } from './netns-fixture.ts';

let dir: string;
before(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skein-seq-')); });
after(() => { fs.rmSync(dir, { recursive: true, force: true }); });

interface Received { data: Buffer; fd: number | undefined }

function nextMessage(s: SeqpacketSocket): Promise<Received> {
  return new Promise((resolve, reject) => {
    s.once('message', (data: Buffer, fd: number | undefined) => { s.off('error', reject); resolve({ data, fd }); });
    s.once('error', reject);
  });
}

async function pair(maxMessageSize?: number): Promise<{ server: SeqpacketServer; a: SeqpacketSocket; b: SeqpacketSocket }> {
  const opts = maxMessageSize === undefined ? {} : { maxMessageSize };
  const server = new SeqpacketServer(path.join(dir, `s${Math.random().toString(36).slice(2)}`), opts);
  const accepted = new Promise<SeqpacketSocket>((r) => server.once('connection', r));
  const a = SeqpacketSocket.connect(server.path);
  const b = await accepted;
  return { server, a, b };
}

test('messages keep their boundaries and an fd arrives as a new fd for the same file', async () => {
  const fdsBefore = openFdCount();
  const { server, a, b } = await pair();
  const file = path.join(dir, 'passed');
  fs.writeFileSync(file, 'x');
  const sent = fs.openSync(file, 'r');

  const first = nextMessage(b);
  await a.send(Buffer.from('hello'), sent);
  const got = await first;
  assert.equal(got.data.toString(), 'hello');
  assert.ok(got.fd !== undefined && got.fd !== sent);
  assert.equal(fs.fstatSync(got.fd).ino, fs.fstatSync(sent).ino);
  fs.closeSync(got.fd);
  fs.closeSync(sent);

  // Two sends are two messages, in order, both directions.
  const msgs: string[] = [];
  const both = new Promise<void>((resolve) => {
    b.on('message', (d: Buffer, fd: number | undefined) => {
      assert.equal(fd, undefined);
      msgs.push(d.toString());
      if (msgs.length === 2) resolve();
    });
  });
  await a.send(Buffer.from('one'));
  await a.send(Buffer.from('two'));
  await both;
  assert.deepEqual(msgs, ['one', 'two']);
  b.removeAllListeners('message');
  const reply = nextMessage(a);
  await b.send(Buffer.from('back'));
  assert.equal((await reply).data.toString(), 'back');

  const closed = new Promise((r) => b.once('close', r));
  a.close();
  await closed;
  server.close();
  assert.equal(fs.existsSync(server.path), false, 'the server removed its socket file');
  await new Promise((r) => setImmediate(r));
  assert.equal(openFdCount(), fdsBefore, 'no fd leaked');
});

test('a message longer than the limit is refused, its fd closed, the connection kept', async () => {
  const fdsBefore = openFdCount();
  const { server, a, b } = await pair(16);
  const passed = fs.openSync('/dev/null', 'r');
  const refused = new Promise<Error & { code?: string }>((r) => b.once('error', r));
  let delivered = 0;
  b.on('message', () => { delivered++; });
  await a.send(Buffer.alloc(32, 1), passed);
  const err = await refused;
  assert.equal(err.code, 'EMSGSIZE');
  assert.match(err.message, /longer than 16 bytes/);
  fs.closeSync(passed);
  assert.equal(delivered, 0, 'the truncated message was not delivered');

  b.removeAllListeners('message');
  const ok = nextMessage(b);
  await a.send(Buffer.from('fits'));
  assert.equal((await ok).data.toString(), 'fits');
  a.close();
  b.close();
  server.close();
  await new Promise((r) => setImmediate(r));
  assert.equal(openFdCount(), fdsBefore, 'the refused message\'s fd was closed');
});

test('sending on a closed socket rejects; a closed peer ends the other side', async () => {
  const { server, a, b } = await pair();
  const bClosed = new Promise((r) => b.once('close', r));
  a.close();
  await assert.rejects(a.send(Buffer.from('late')), { code: 'ERR_SOCKET_CLOSED' });
  await bClosed;
  assert.equal(b.closed, true);
  await assert.rejects(b.send(Buffer.from('x'), -3), TypeError);
  server.close();
});

test('waiting for a message does not block the event loop', async () => {
  const { server, a, b } = await pair();
  const arrived = nextMessage(b);
  let ticks = 0;
  const timer = setInterval(() => { ticks++; }, 5);
  await new Promise((r) => setTimeout(r, 60));
  await a.send(Buffer.from('late'));
  await arrived;
  clearInterval(timer);
  assert.ok(ticks >= 5, `timers ran while a message was awaited (${ticks})`);
  a.close();
  b.close();
  server.close();
});

test('a full socket buffer queues sends until the peer reads', async () => {
  const { server, a, b } = await pair();
  // Send without a reader until the kernel buffer fills; then read everything.
  const n = 2000;
  const sends: Promise<void>[] = [];
  for (let i = 0; i < n; i++) sends.push(a.send(Buffer.alloc(1024, i % 256)));
  let got = 0;
  const all = new Promise<void>((resolve) => {
    b.on('message', (d: Buffer) => {
      assert.equal(d[0], got % 256);
      if (++got === n) resolve();
    });
  });
  await Promise.all(sends);
  await all;
  assert.equal(got, n);
  a.close();
  b.close();
  server.close();
});

test('libbpf is linked in', () => {
  assert.match(native.libbpfVersion(), /^1\.\d+$/);
});
