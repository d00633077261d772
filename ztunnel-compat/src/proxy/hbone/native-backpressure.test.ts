// SPDX-License-Identifier: Apache-2.0
// The native engine sending into a full TLS socket, over and over: the
// engine's client and server talk across loopback of a namespace with tiny
// TCP buffers while busy processes take the CPUs, so a sender is often
// preempted between a write the socket refused and its retry — by which time
// the reader has made room. Every download must still finish: a transfer
// that stops there waits for a peer frame that a peer with window to spare
// never sends (the demo's 1 MiB downloads stalled so under load).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { connect as netConnect, createServer as createNetServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { hboneEngineUnavailable, listenTcp } from '@skein/bpf';
import { createNetns, type TempNetns } from '../../../../bpf/test/netns-fixture.ts';
import { root, skipUnless } from '../../../../test/skips.ts';
import { NativeHboneClient } from './native-client.ts';
import { NativeHboneServer } from './native-server.ts';
import { certs, connectUpstream, patternSource } from './testing.ts';
import type { Certs, PatternSource } from './testing.ts';

const skip = skipUnless(root('a network namespace with its own TCP buffer sizes'),
  { what: 'the native HBONE engine', missing: hboneEngineUnavailable(), impossible: false });

const SIZE = 4 << 20;
const DOWNLOADS = 300;
const BUDGET_MS = 20_000;
/** Far above what a download takes here (under 1 s), far below the engine's PING interval. */
const STALL_MS = 4_000;

let c: Certs;
let ns: TempNetns;
let netnsFd: number;
let engine: NativeHboneClient;
let server: NativeHboneServer;
let listener: Server;
let pods: Server;
let source: PatternSource;
/** Undoes what before() made, newest first; also after a before() that failed half way. */
const undo: (() => unknown)[] = [];
const accepted: Socket[] = [];

before(async () => {
  if (skip !== false) return;
  c = await certs();
  ns = createNetns();
  undo.push(() => { ns.remove(); });
  // The smallest buffers the kernel allows: nearly every DATA frame meets a full socket.
  ns.run('sysctl', '-qw', 'net.ipv4.tcp_wmem=4096 8192 16384', 'net.ipv4.tcp_rmem=4096 8192 16384');
  netnsFd = openSync(ns.path, 'r');
  undo.push(() => { closeSync(netnsFd); });
  source = await patternSource(SIZE);
  undo.push(() => { source.close(); });
  // Long PING intervals: a ping must not be what revives a stalled session.
  engine = new NativeHboneClient({ workers: 2, pingIntervalMs: 600_000 });
  undo.push(() => { engine.close(); });
  server = new NativeHboneServer(engine, c.server, { handler: () => connectUpstream(source.port) });
  undo.push(() => server.close(1000));
  listener = await listenTcp({ address: '127.0.0.1', port: 0, netns: ns.path }, (s) => { server.accept(s); });
  undo.push(() => { listener.close(); });
  pods = createNetServer({ allowHalfOpen: true }, (s) => { accepted.push(s); });
  undo.push(() => { pods.close(); });
  await new Promise<void>((resolve) => { pods.listen(0, '127.0.0.1', resolve); });
});

after(async () => {
  for (const u of undo.reverse()) await u();
});

/** What one download delivered to the app, or `stalled` with how far it got. */
async function download(): Promise<{ got: Buffer; stalled: boolean }> {
  const app = netConnect({ host: '127.0.0.1', port: (pods.address() as AddressInfo).port, allowHalfOpen: true });
  await new Promise<void>((resolve, reject) => { app.once('connect', resolve); app.once('error', reject); });
  while (accepted.length === 0) await new Promise((r) => setTimeout(r, 1));
  const pod = accepted.shift();
  assert.ok(pod);
  const port = (listener.address() as AddressInfo).port;
  // The upstream socket is made in the namespace: both ends of the pooled
  // connection have the tiny buffers.
  await engine.open(pod, { cert: c.client, expected: [c.serverId], upstream: { ip: '127.0.0.1', port }, authority: `127.0.0.1:${source.port}`, netnsFd });
  try {
    return await new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const timer = setTimeout(() => { resolve({ got: Buffer.concat(chunks), stalled: true }); }, STALL_MS);
      app.on('data', (d: Buffer) => { chunks.push(d); });
      app.once('end', () => { clearTimeout(timer); resolve({ got: Buffer.concat(chunks), stalled: false }); });
      app.once('error', (e) => { clearTimeout(timer); reject(e); });
      app.end();
    });
  } finally {
    app.destroy();
  }
}

test('downloads through full TLS sockets under CPU contention all finish: a write that waited resumes without the peer\'s help', { skip, timeout: BUDGET_MS + 30_000 }, async () => {
  // Two busy processes (one per core here) that end by themselves past the
  // budget, and are killed by PID when the test ends first.
  const spin = `const end = Date.now() + ${BUDGET_MS + 5_000}; while (Date.now() < end);`;
  const hogs = [0, 1].map(() => spawn(process.execPath, ['-e', spin], { stdio: 'ignore' }));
  try {
    const until = Date.now() + BUDGET_MS;
    let done = 0;
    while (done < DOWNLOADS && Date.now() < until) {
      const r = await download();
      assert.ok(!r.stalled, `download ${done + 1} stalled after ${r.got.length} of ${SIZE} bytes`);
      assert.ok(r.got.equals(source.pattern), `download ${done + 1}: ${r.got.length} bytes, not the source's ${SIZE} in order`);
      done++;
    }
    assert.ok(done >= 20, `only ${done} downloads within ${BUDGET_MS} ms`);
  } finally {
    for (const h of hogs) h.kill('SIGKILL');
  }
});
