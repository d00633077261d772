// SPDX-License-Identifier: Apache-2.0
// A bounded fuzz run of the native engine's receive path: a TLS 1.3 peer
// that answers the engine's CONNECT with HTTP/2 frames built from valid
// seeds (SETTINGS, HEADERS :status 200, DATA, WINDOW_UPDATE, RST_STREAM,
// PING, GOAWAY, CONTINUATION, PUSH_PROMISE, unknown types) and then mutated
// (bit flips, lying lengths, truncation, other stream ids, junk).
// Every tunnel must settle (open then end, or fail) within a bound, the
// process must survive, and no stream, session or fd may be left behind.
// The seed is printed; FUZZ_SEED=<n> replays a run, FUZZ_ITERATIONS sets its length.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { connect as netConnect, createServer as createNetServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { createServer as createTlsServer } from 'node:tls';
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import { hboneEngineUnavailable } from '@skein/bpf';
import { skipUnless } from '../../../../test/skips.ts';
import { NativeHboneClient } from './native-client.ts';
import { certs } from './testing.ts';
import type { Certs } from './testing.ts';

// setup builds the engine: its absence fails these tests (test/skips.ts).
const skip = skipUnless({ what: 'the native HBONE engine', missing: hboneEngineUnavailable(), impossible: false });
const ITERATIONS = Number(process.env.FUZZ_ITERATIONS ?? 300);
const BUDGET_MS = 20_000;
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 0x7fffffff);

/** xorshift32: reproducible from SEED. */
let state = SEED || 1;
function rand(n: number): number {
  state ^= state << 13;
  state ^= state >>> 17;
  state ^= state << 5;
  state >>>= 0;
  return state % n;
}

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream >>> 0, 5);
  return Buffer.concat([h, payload]);
}

const u32 = (v: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32BE(v >>> 0); return b; };
const settings = (pairs: [number, number][]): Buffer => Buffer.concat(pairs.map(([id, v]) => { const b = Buffer.alloc(6); b.writeUInt16BE(id); b.writeUInt32BE(v >>> 0, 2); return b; }));

// RFC 9113 frame types; HPACK 0x88 is the static-table ":status: 200", 0x8d ":status: 404".
const SEEDS: (() => Buffer)[] = [
  () => frame(4, 0, 0, settings([[3, 100], [4, 65535]])),
  () => frame(4, 1, 0, Buffer.alloc(0)),
  () => frame(1, 4, 1, Buffer.from([0x88])),
  () => frame(1, 5, 1, Buffer.from([0x8d])),
  () => frame(0, 0, 1, Buffer.from('hello')),
  () => frame(0, 1, 1, Buffer.from('bye')),
  () => frame(8, 0, 0, u32(1 << 20)),
  () => frame(8, 0, 1, u32(0)),
  () => frame(3, 0, 1, u32(8)),
  () => frame(6, 0, 0, Buffer.alloc(8, 7)),
  () => frame(7, 0, 0, Buffer.concat([u32(0), u32(0)])),
  () => frame(9, 0, 1, Buffer.from([0x88])),
  () => frame(5, 4, 1, Buffer.concat([u32(2), Buffer.from([0x88])])),
  () => frame(0xfa, 0xff, 3, Buffer.alloc(rand(40))),
];

function mutate(b: Buffer): Buffer {
  const out = Buffer.from(b);
  switch (rand(6)) {
    case 0: // flip bits
      for (let i = 0, n = 1 + rand(4); i < n && out.length > 0; i++) {
        const at = rand(out.length);
        out[at] = (out[at] ?? 0) ^ (1 << rand(8));
      }
      return out;
    case 1: // a lying length
      out.writeUIntBE(rand(1 << 24), 0, 3);
      return out;
    case 2: // truncated
      return out.subarray(0, rand(out.length + 1));
    case 3: // another stream id
      out.writeUInt32BE([0, 1, 2, 3, 0x7fffffff, 0x80000001][rand(6)] ?? 0, 5);
      return out;
    case 4: // junk
      return Buffer.from(Array.from({ length: rand(64) }, () => rand(256)));
    default:
      return out;
  }
}

/** The peer's first answer, to the engine's preface: valid SETTINGS, mostly. */
function opening(): Buffer {
  const seed = SEEDS[0]?.() ?? Buffer.alloc(0);
  return rand(8) === 0 ? mutate(seed) : seed;
}

/** Its answer to the CONNECT: a 200 and some DATA, mostly, then more frames; any of them mutated. */
function script(): Buffer {
  const parts: Buffer[] = [];
  if (rand(3) !== 0) parts.push(frame(4, 1, 0, Buffer.alloc(0)), frame(1, 4, 1, Buffer.from([0x88])), frame(0, 0, 1, Buffer.from('data')));
  for (let i = 0, n = 1 + rand(8); i < n; i++) {
    const seed = SEEDS[rand(SEEDS.length)]?.() ?? Buffer.alloc(0);
    parts.push(rand(3) === 0 ? seed : mutate(seed));
  }
  return Buffer.concat(parts);
}

let c: Certs;
let peer: TlsServer;
let peerPort: number;
let pods: Server;
const accepted: Socket[] = [];
const peerSockets = new Set<TLSSocket>();
/** What the peer sent on the latest connection, for the failure message. */
let lastScript = Buffer.alloc(0);

before(async () => {
  if (skip !== false) return;
  c = await certs();
  peer = createTlsServer({
    key: c.server.keyPem, cert: c.server.chainPems.join(''), ca: [...c.server.rootPems],
    minVersion: 'TLSv1.3', ALPNProtocols: ['h2'], requestCert: true, rejectUnauthorized: false,
  }, (s) => {
    peerSockets.add(s);
    s.on('close', () => peerSockets.delete(s));
    s.on('error', () => undefined);
    // Answer once the client's preface and first frames are in, then hang up
    // a little later: each connection ends within a bound whatever it sent.
    // First the SETTINGS (the engine sends its CONNECT only after them),
    // then the fuzzed rest; then hang up a little later, so each connection
    // ends within a bound whatever it sent.
    let turn = 0;
    const sent: Buffer[] = [];
    s.on('data', () => {
      turn++;
      if (turn > 2) return;
      // Now and then all at once: SETTINGS and what follows in one read.
      const early = turn === 1 && rand(4) === 0;
      const out = turn === 1 ? (early ? Buffer.concat([opening(), script()]) : opening()) : script();
      if (early) turn = 2;
      sent.push(out);
      lastScript = Buffer.concat(sent);
      s.write(out);
      if (turn === 2) {
        setTimeout(() => { s.end(); }, 20 + rand(60)).unref();
        setTimeout(() => { s.destroy(); }, 200).unref();
      }
    });
    setTimeout(() => { s.destroy(); }, 1000).unref();
    s.resume();
  });
  await new Promise<void>((resolve) => { peer.listen(0, '127.0.0.1', resolve); });
  peerPort = (peer.address() as AddressInfo).port;
  pods = createNetServer({ allowHalfOpen: true }, (s) => { accepted.push(s); });
  await new Promise<void>((resolve) => { pods.listen(0, '127.0.0.1', resolve); });
});

after(async () => {
  if (skip !== false) return;
  for (const s of peerSockets) s.destroy();
  await new Promise<void>((resolve) => { peer.close(() => { resolve(); }); });
  await new Promise<void>((resolve) => { pods.close(() => { resolve(); }); });
});

async function podPair(): Promise<{ app: Socket; pod: Socket }> {
  const n = accepted.length;
  const app = netConnect({ host: '127.0.0.1', port: (pods.address() as AddressInfo).port, allowHalfOpen: true });
  app.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => { app.once('connect', resolve); app.once('error', reject); });
  while (accepted.length === n) await new Promise((r) => setTimeout(r, 1));
  const pod = accepted.splice(n, 1)[0];
  assert.ok(pod);
  return { app, pod };
}

function settleWithin<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((_, reject) => { timer = setTimeout(() => { reject(new Error(`${what} did not settle within ${ms} ms`)); }, ms); })])
    .finally(() => { clearTimeout(timer); });
}

test(`fuzzed HTTP/2 answers never hang, crash or leak the native engine (seed ${SEED})`, { skip, timeout: BUDGET_MS + 15_000 }, async () => {
  process.stdout.write(`# native engine fuzz seed ${SEED} (FUZZ_SEED=${SEED} to replay)\n`);
  const client = new NativeHboneClient({ workers: 2, connectTimeoutMs: 2000, pingIntervalMs: 1000, pingTimeoutMs: 1000 });
  const fdsBefore = readdirSync('/proc/self/fd').length;
  const stopAt = Date.now() + BUDGET_MS;
  let opened = 0;
  let failed = 0;
  let runs = 0;
  try {
    for (; runs < ITERATIONS && Date.now() < stopAt; runs++) {
      const { app, pod } = await podPair();
      app.resume();
      app.write('payload');
      // A fresh pool key: each run gets its own connection and script.
      const open = client.open(pod, {
        cert: c.client, expected: [c.serverId], upstream: { ip: '127.0.0.1', port: peerPort },
        authority: '127.0.0.1:9', poolKey: `fuzz-${runs}`,
      });
      try {
        const t = await settleWithin(open, 5000, `run ${runs}: the CONNECT`);
        opened++;
        app.end();
        await settleWithin(t.done, 5000, `run ${runs}: the tunnel's end`);
      } catch (err) {
        if ((err as Error).message.includes('did not settle')) {
          throw new Error(`${(err as Error).message}; the peer sent ${lastScript.toString('hex')}; engine ${JSON.stringify(client.stats())}`);
        }
        failed++;
      }
      app.destroy();
    }
    const deadline = Date.now() + 5000;
    while (client.stats().streamsLive + client.stats().sessionsLive > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual([client.stats().streamsLive, client.stats().sessionsLive], [0, 0], 'every stream and session ended');
    process.stdout.write(`# ${runs} runs: ${opened} opened, ${failed} failed\n`);
  } finally {
    client.close();
  }
  await new Promise((r) => setTimeout(r, 300));
  const fdsAfter = readdirSync('/proc/self/fd').length;
  assert.ok(fdsAfter <= fdsBefore + 2, `fds: ${fdsBefore} before, ${fdsAfter} after`);
});
