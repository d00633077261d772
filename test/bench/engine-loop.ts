// SPDX-License-Identifier: Apache-2.0
// The native HBONE engine alone on loopback, for A/B of its data path:
// `test/node test/bench/engine-loop.ts [--bytes N] [--reps N] [--dir up|down] [--workers N] [--json]`.
// One process holds the engine with both ends of the tunnel (the outbound
// client and the 15008 server), so all HBONE work is in its threads
// (skein-hbone-*); the app and the upstream are a child process that writes
// and counts. Prints the engine threads' CPU seconds per GiB carried and the
// throughput. Bounded: each rep stops at --bytes (default 2 GiB) or 60 s.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { NativeHboneClient } from '../../ztunnel-compat/src/proxy/hbone/native-client.ts';
import { NativeHboneServer } from '../../ztunnel-compat/src/proxy/hbone/native-server.ts';
import { certs, connectUpstream } from '../../ztunnel-compat/src/proxy/hbone/testing.ts';

const argv = process.argv.slice(2);
function opt(name: string, dflt: string): string {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] ?? dflt : dflt;
}
const bytes = Number(opt('bytes', String(2 * 1024 ** 3)));
const reps = Number(opt('reps', '3'));
const dir = opt('dir', 'up');
const workers = Number(opt('workers', '2'));
const json = argv.includes('--json');
const TIME_LIMIT_MS = 60_000;
if (!(bytes > 0) || !(reps > 0 && reps <= 50) || (dir !== 'up' && dir !== 'down')) {
  process.stderr.write('usage: engine-loop.ts [--bytes N] [--reps N (≤50)] [--dir up|down] [--workers N] [--json]\n');
  process.exit(2);
}

// The child: an upstream that sinks (up) or sources (down) `bytes`, and an
// app that connects to the pod listener and does the other half. One JSON
// line out per event.
const CHILD = `
const net = require('node:net');
const [bytes, dir, limit] = process.argv.slice(1).map((v, i) => i === 1 ? v : Number(v));
const chunk = Buffer.alloc(256 * 1024, 0x5a);
const say = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
function pump(s, n, done) {
  let left = n;
  const go = () => {
    while (left > 0) {
      const c = left >= chunk.length ? chunk : chunk.subarray(0, left);
      left -= c.length;
      if (!s.write(c)) { s.once('drain', go); return; }
    }
    s.end(); done?.();
  };
  go();
}
function sink(s, start) {
  let got = 0;
  s.on('data', (d) => { got += d.length; });
  s.on('end', () => { say({ done: true, bytes: got, ms: Date.now() - start }); s.end(); });
  s.on('error', (e) => say({ error: e.message }));
}
const up = net.createServer({ allowHalfOpen: true }, (s) => {
  if (dir === 'up') sink(s, Date.now()); else { s.resume(); pump(s, bytes); }
});
up.listen(0, '127.0.0.1', () => say({ port: up.address().port }));
require('node:readline').createInterface({ input: process.stdin }).on('line', (line) => {
  const m = JSON.parse(line);
  if (m.quit) process.exit(0);
  const start = Date.now();
  const app = net.connect({ host: '127.0.0.1', port: m.pod, allowHalfOpen: true });
  const t = setTimeout(() => { say({ error: 'time limit' }); app.destroy(); }, limit);
  app.on('close', () => clearTimeout(t));
  app.on('error', (e) => say({ error: e.message }));
  app.on('connect', () => { if (dir === 'up') { app.resume(); pump(app, bytes); } else sink(app, start); });
});
`;

/** Nanoseconds on CPU of this process's engine threads (their schedstat). */
function engineNs(): number {
  let ns = 0;
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      if (!readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').startsWith('skein-hbone')) continue;
      ns += Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch { /* the thread ended */ }
  }
  return ns;
}

const c = await certs();
const engine = new NativeHboneClient({ workers });
const server = new NativeHboneServer(engine, c.server, { handler: () => connectUpstream(upPort) });
const hbone = createServer((s) => { server.accept(s); });
const pods: Socket[] = [];
const podListener = createServer({ allowHalfOpen: true }, (s) => { pods.push(s); });
await Promise.all([hbone, podListener].map((l) => new Promise<void>((r) => { l.listen(0, '127.0.0.1', r); })));
const hbonePort = (hbone.address() as AddressInfo).port;

const child = spawn(process.execPath, ['-e', CHILD, String(bytes), dir, String(TIME_LIMIT_MS)], { stdio: ['pipe', 'pipe', 'inherit'] });
const lines = createInterface({ input: child.stdout });
const queue: Record<string, unknown>[] = [];
let wake: () => void = () => undefined;
lines.on('line', (l) => { queue.push(JSON.parse(l) as Record<string, unknown>); wake(); });
async function next(): Promise<Record<string, unknown>> {
  while (queue.length === 0) await new Promise<void>((r) => { wake = r; });
  return queue.shift() ?? {};
}
const upPort = Number((await next()).port);

const results: { gbps: number; cpuPerGiB: number; bytes: number; seconds: number; cpuSeconds: number }[] = [];
try {
  for (let i = 0; i < reps; i++) {
    const ns0 = engineNs();
    const t0 = process.hrtime.bigint();
    child.stdin.write(`${JSON.stringify({ pod: (podListener.address() as AddressInfo).port })}\n`);
    while (pods.length === 0) await new Promise((r) => setTimeout(r, 1));
    const pod = pods.shift();
    if (pod === undefined) throw new Error('no pod socket');
    const tunnel = engine.open(pod, {
      cert: c.client, expected: [c.serverId], upstream: { ip: '127.0.0.1', port: hbonePort }, authority: `127.0.0.1:${upPort}`,
    });
    const m = await next();
    if (m.error !== undefined) throw new Error(`rep ${i}: ${JSON.stringify(m.error)}`);
    await (await tunnel).done;
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = (engineNs() - ns0) / 1e9;
    const got = Number(m.bytes);
    if (got !== bytes) throw new Error(`rep ${i}: ${got} bytes arrived of ${bytes}`);
    const r = { gbps: (got * 8) / secs / 1e9, cpuPerGiB: cpu / (got / 1024 ** 3), bytes: got, seconds: secs, cpuSeconds: cpu };
    results.push(r);
    if (!json) process.stdout.write(`rep ${i + 1}: ${r.gbps.toFixed(2)} Gbit/s, engine CPU ${r.cpuPerGiB.toFixed(3)} s/GiB (${cpu.toFixed(2)} s over ${secs.toFixed(2)} s)\n`);
  }
} finally {
  child.stdin.write(`${JSON.stringify({ quit: true })}\n`);
  await server.close(500);
  engine.close();
  hbone.close();
  podListener.close();
}
const range = (k: 'gbps' | 'cpuPerGiB'): [number, number] => [Math.min(...results.map((r) => r[k])), Math.max(...results.map((r) => r[k]))];
if (json) {
  process.stdout.write(`${JSON.stringify({ dir, bytes, workers, results })}\n`);
} else {
  const [g0, g1] = range('gbps');
  const [c0, c1] = range('cpuPerGiB');
  process.stdout.write(`engine-loop ${dir}: ${g0.toFixed(2)}–${g1.toFixed(2)} Gbit/s, engine CPU ${c0.toFixed(3)}–${c1.toFixed(3)} s/GiB\n`);
}
