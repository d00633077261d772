// SPDX-License-Identifier: Apache-2.0
// A connection churn through one path of the hbone scenario, with the CPU
// each proxy thread spends per new connection, for A/B of the per-connection
// cost: `test/node test/bench/conn-churn.ts [--paths a,b] [--reps N]
// [--duration S] [--json] [--node-arg --cpu-prof …]` (as root; default path skein-native, 3 reps of
// 4 s). wrk with `Connection: close` at 16 connections, as the bench's "new
// conn each" load; each proxy thread's utime + stime from
// /proc/<pid>/task/*/stat before and after, grouped by thread name
// (MainThread, V8Worker, skein-hbone-N → skein-hbone-#). Bounded: wrk runs
// --duration seconds per rep, and the lab is torn down at the end.
import { readdirSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Lab } from '../lab/index.ts';
import { runWrk } from './measure/wrk.ts';
import type { ActivePath, BenchEnv, ProxyProcess } from './scenario.ts';
import { hbone } from './scenarios/hbone.ts';
import { startServers } from './servers.ts';

const CONNECTIONS = 16;
const TICKS_PER_S = 100;

const { values } = parseArgs({
  options: { paths: { type: 'string', default: 'skein-native' }, reps: { type: 'string', default: '3' }, duration: { type: 'string', default: '4' }, json: { type: 'boolean', default: false }, 'node-arg': { type: 'string', multiple: true, default: [] } },
});
const reps = Number(values.reps);
const durationS = Number(values.duration);
const paths = values.paths.split(',').map((name) => {
  const p = hbone.paths.find((q) => q.name === name);
  if (p === undefined) usage(`unknown path '${name}' (one of ${hbone.paths.map((q) => q.name).join(', ')})`);
  return p;
});
if (!Number.isInteger(reps) || reps < 1 || reps > 20 || !Number.isInteger(durationS) || durationS < 1 || durationS > 60) usage('--reps is 1-20 and --duration 1-60 whole seconds');

function usage(why: string): never {
  process.stderr.write(`conn-churn: ${why}\nusage: conn-churn.ts [--paths a,b] [--reps N] [--duration S] [--json] [--node-arg ARG]…\n`);
  process.exit(2);
}

/** CPU ticks per thread name of a process (numbered threads of one kind summed). */
function threadTicks(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // the thread ended meanwhile
    }
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')).replace(/\d+$/, '#');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    out.set(name, (out.get(name) ?? 0) + Number(f[11]) + Number(f[12]));
  }
  return out;
}

interface Rep {
  path: string;
  connPerS: number;
  /** Per proxy, per thread name: CPU µs per connection. */
  usPerConn: Record<string, Record<string, number>>;
}

async function churn(env: BenchEnv, name: string, on: ActivePath): Promise<Rep> {
  const url = `http://${on.targets.http.host}:${on.targets.http.port}/`;
  const before = on.proxies.map((p: ProxyProcess) => threadTicks(p.pid));
  const w = await runWrk(env.client, { url, connections: CONNECTIONS, durationS, newConnections: true });
  const conns = w.requests;
  const usPerConn: Record<string, Record<string, number>> = {};
  for (const [i, p] of on.proxies.entries()) {
    const b = before[i] ?? new Map<string, number>();
    const per: Record<string, number> = {};
    for (const [thread, ticks] of threadTicks(p.pid)) {
      const d = ticks - (b.get(thread) ?? 0);
      if (d > 0) per[thread] = Math.round((d / TICKS_PER_S) * 1e6 / conns);
    }
    usPerConn[p.name] = per;
  }
  return { path: name, connPerS: Math.round(w.rps), usPerConn };
}

const lab = Lab.create(hbone.lab);
const results: Rep[] = [];
try {
  const { client, server } = hbone.roles(lab);
  const servers = await startServers(server, lab.dir);
  try {
    const env: BenchEnv = { lab, client, server: { pod: server, ...servers.targets }, nodeArgs: values['node-arg'] };
    for (const path of paths) {
      const on = await path.setup(env);
      try {
        // One unmeasured run first: pools, caches and JIT warm.
        await runWrk(client, { url: `http://${on.targets.http.host}:${on.targets.http.port}/`, connections: CONNECTIONS, durationS: 2, newConnections: true });
        for (let r = 1; r <= reps; r++) {
          const rep = await churn(env, path.name, on);
          results.push(rep);
          if (!values.json) {
            const per = Object.entries(rep.usPerConn).map(([proxy, t]) => `${proxy} ${Object.entries(t).map(([k, v]) => `${k}=${v}`).join(' ')}`).join(' | ');
            process.stdout.write(`${path.name} rep ${r}/${reps}: ${rep.connPerS} new connections/s; CPU µs per connection: ${per}\n`);
          }
        }
      } finally {
        await on.teardown();
      }
    }
  } finally {
    await servers.stop();
  }
} finally {
  lab.teardown();
}
if (values.json) process.stdout.write(`${JSON.stringify({ connections: CONNECTIONS, durationS, reps: results })}\n`);
