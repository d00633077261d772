// SPDX-License-Identifier: Apache-2.0
// What per-connection objects can cost the young-generation GC:
// `test/node test/bench/churn-gc.ts [--seconds S]`. A child process makes a
// "connection" (an object graph of about 1.5 KB, 16 in flight) and drops
// the oldest, with other short-lived garbage alongside, under the daemon's
// V8 flags and --trace-gc-nvp, keeping them in a long-lived Map, a Set or
// the proxy's ChurnTable; and, in a ChurnTable, each with a request object
// whose getter reads the connection, made by an object literal or by a
// class. Prints the bytes each scavenge promoted to the old generation,
// against the bytes allocated. Bounded: each child runs --seconds
// (default 3).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { DEFAULT_NODE_FLAGS } from '../../ztunnel-compat/src/launch.ts';
import { ChurnTable } from '../../ztunnel-compat/src/proxy/churn-table.ts';

type Kind = 'map' | 'set' | 'churn-table' | 'literal-getter' | 'class-getter';
const KINDS: readonly Kind[] = ['map', 'set', 'churn-table', 'literal-getter', 'class-getter'];
const IN_FLIGHT = 16;

interface Conn { id: number; key: number; parts: { k: number; v: string }[]; bytes: number[]; request?: { readonly first: string } }

class Request {
  readonly #conn: Conn;
  constructor(conn: Conn) {
    this.#conn = conn;
  }

  get first(): string {
    return this.#conn.parts[0]?.v ?? '';
  }
}

/** The child: churns `kind` for `seconds`, one event-loop turn per 200 connections. */
function churn(kind: Kind, seconds: number): void {
  const map = new Map<number, Conn>();
  const set = new Set<Conn>();
  const table = new ChurnTable<Conn>();
  const inFlight: Conn[] = [];
  const until = Date.now() + seconds * 1000;
  let id = 1;
  let sink = 0;
  const step = (): void => {
    for (let i = 0; i < 200; i++, id++) {
      const c: Conn = { id, key: 0, parts: Array.from({ length: 12 }, (_, k) => ({ k, v: `part-${id}-${k}` })), bytes: new Array<number>(20).fill(id) };
      if (kind === 'map') map.set(id, c);
      else if (kind === 'set') set.add(c);
      else c.key = table.add(c);
      if (kind === 'literal-getter') c.request = { get first() { return c.parts[0]?.v ?? ''; } };
      else if (kind === 'class-getter') c.request = new Request(c);
      sink += c.request?.first.length ?? 0;
      inFlight.push(c);
      if (inFlight.length > IN_FLIGHT) {
        const done = inFlight.shift();
        if (done === undefined) continue;
        if (kind === 'map') map.delete(done.id);
        else if (kind === 'set') set.delete(done);
        else table.delete(done.key);
      }
      for (let j = 0; j < 20; j++) sink += [j, { j }].length;
    }
    if (Date.now() < until) setImmediate(step);
    else if (sink < 0) process.stdout.write(`${sink}\n`); // never: keeps the garbage from being optimised away
  };
  step();
}

function run(kind: Kind, seconds: number): { promoted: number; allocated: number; scavenges: number } {
  const r = spawnSync(process.execPath, [...DEFAULT_NODE_FLAGS, '--trace-gc-nvp', fileURLToPath(import.meta.url), '--child', kind, String(seconds)], {
    encoding: 'utf8', timeout: (seconds + 20) * 1000, maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) throw new Error(`churn-gc child (${kind}) failed: ${r.error?.message ?? r.stderr}`);
  // Past the first third: the steady state, not the start.
  const rows = r.stdout.split('\n').filter((l) => l.includes('gc=s '));
  const steady = rows.slice(Math.floor(rows.length / 3));
  const field = (l: string, k: string): number => Number(new RegExp(`\\b${k}=([0-9.]+)`).exec(l)?.[1] ?? NaN);
  const mean = (k: string): number => steady.reduce((a, l) => a + field(l, k), 0) / steady.length;
  return { promoted: mean('promoted'), allocated: mean('allocated'), scavenges: steady.length };
}

const argv = process.argv.slice(2);
if (argv[0] === '--child') {
  churn(argv[1] as Kind, Number(argv[2]));
} else {
  const i = argv.indexOf('--seconds');
  const seconds = i >= 0 ? Number(argv[i + 1]) : 3;
  if (!(seconds >= 1 && seconds <= 30)) {
    process.stderr.write('usage: churn-gc.ts [--seconds S (1-30)]\n');
    process.exit(2);
  }
  for (const kind of KINDS) {
    const f = run(kind, seconds);
    const pct = (100 * f.promoted) / f.allocated;
    process.stdout.write(`${kind.padEnd(14)} promoted ${(f.promoted / 1024).toFixed(0).padStart(5)} KiB of ${(f.allocated / 1024).toFixed(0)} KiB allocated per scavenge (${pct.toFixed(1)}%), ${f.scavenges} scavenges\n`);
  }
}
