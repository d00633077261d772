// SPDX-License-Identifier: Apache-2.0
// `npm run bench -- xds`: time and memory for Skein's control-plane client to
// take a snapshot of W workloads + S services + P policies from the istiod
// double (gRPC/TLS, separate process), then to apply single-workload updates.
// Figures: snapshot_ms (stream start → every type applied and acknowledged),
// update_ms p50/p99/max (push → state changed), retained heap per workload.
import { spawn } from 'node:child_process';
import readline from 'node:readline';
import v8 from 'node:v8';
import vm from 'node:vm';
import { AdsClient } from '@skein/ztunnel-compat/xds/client';
import { ProxyState } from '@skein/ztunnel-compat/state/store';
import { ProxyStateUpdater } from '@skein/ztunnel-compat/state/updater';
import { median, percentile } from '../measure/stats.ts';
import type { MeshSize } from './fixture.ts';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

export interface XdsFigures {
  snapshot_ms: number;
  update_ms_p50: number;
  update_ms_p99: number;
  update_ms_max: number;
  heap_bytes_per_workload: number;
  heap_mb: number;
}

export interface XdsReport extends MeshSize {
  scenario: 'xds';
  reps: number;
  updates: number;
  /** Medians over the repetitions; min and max beside. */
  figures: XdsFigures;
  min: XdsFigures;
  max: XdsFigures;
}

function heapUsed(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

async function once(size: MeshSize, updates: number, log: (s: string) => void): Promise<XdsFigures> {
  const child = spawn(process.execPath, [new URL('./istiod-process.ts', import.meta.url).pathname, String(size.workloads), String(size.services), String(size.policies)], { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    const lines = readline.createInterface({ input: child.stdout });
    const first = await new Promise<string>((resolve, reject) => {
      lines.once('line', resolve);
      child.once('exit', (code) => { reject(new Error(`istiod double exited (${code})`)); });
    });
    const { port, rootPem, token } = JSON.parse(first) as { port: number; rootPem: string; token: string };
    log(`istiod double ready on 127.0.0.1:${port} with ${size.workloads} workloads`);

    const before = heapUsed();
    const state = new ProxyState();
    const updater = new ProxyStateUpdater(state);
    const client = new AdsClient({
      channel: { address: `https://127.0.0.1:${port}`, root: { kind: 'pem', pem: rootPem }, token: { kind: 'literal', token }, clusterId: 'Kubernetes' },
      node: { id: 'ztunnel~10.0.0.1~ztunnel-bench.istio-system~istio-system.svc.cluster.local' },
      handlers: [updater.addressHandler, updater.authorizationHandler],
    });
    const t0 = performance.now();
    client.start();
    await client.whenReady();
    const snapshotMs = performance.now() - t0;
    if (state.workloads.count !== size.workloads) throw new Error(`applied ${state.workloads.count} of ${size.workloads} workloads`);
    const after = heapUsed();

    const times: number[] = [];
    for (let u = 0; u < updates; u++) {
      const i = (u * 97) % size.workloads;
      const changed = new Promise<void>((resolve) => {
        const off = state.onChange((c) => {
          if (c.workloads.added.length > 0) { off(); resolve(); }
        });
      });
      const t = performance.now();
      child.stdin.write(`update ${i} ${u + 1}\n`);
      await changed;
      times.push(performance.now() - t);
    }
    client.stop();
    return {
      snapshot_ms: round(snapshotMs),
      update_ms_p50: round(percentile(times, 50)),
      update_ms_p99: round(percentile(times, 99)),
      update_ms_max: round(Math.max(...times)),
      heap_bytes_per_workload: Math.round((after - before) / size.workloads),
      heap_mb: round((after - before) / 1048576),
    };
  } finally {
    child.stdin.end('quit\n');
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

const round = (x: number): number => Math.round(x * 1000) / 1000;

export async function runXdsBench(o: { reps: number; size: MeshSize; updates: number; log: (s: string) => void }): Promise<XdsReport> {
  const runs: XdsFigures[] = [];
  for (let r = 0; r < o.reps; r++) {
    o.log(`rep ${r + 1}/${o.reps}`);
    runs.push(await once(o.size, o.updates, o.log));
  }
  const pick = (f: (xs: number[]) => number): XdsFigures => {
    const out = {} as Record<keyof XdsFigures, number>;
    for (const k of Object.keys(runs[0] ?? {}) as (keyof XdsFigures)[]) out[k] = round(f(runs.map((x) => x[k])));
    return out;
  };
  return { scenario: 'xds', ...o.size, reps: o.reps, updates: o.updates, figures: pick(median), min: pick((xs) => Math.min(...xs)), max: pick((xs) => Math.max(...xs)) };
}

export function xdsTable(r: XdsReport): string {
  const rows: [string, keyof XdsFigures, string][] = [
    ['snapshot applied (ms)', 'snapshot_ms', '< 1000'],
    ['incremental update p50 (ms)', 'update_ms_p50', '< 5'],
    ['incremental update p99 (ms)', 'update_ms_p99', '< 5'],
    ['incremental update max (ms)', 'update_ms_max', ''],
    ['retained heap per workload (bytes)', 'heap_bytes_per_workload', '< 3072'],
    ['retained heap total (MB)', 'heap_mb', ''],
  ];
  const lines = [
    `scenario xds: ${r.workloads} workloads + ${r.services} services + ${r.policies} policies from the istiod double, then ${r.updates} single-workload updates`,
    `median (min–max) of ${r.reps} repetitions`,
    '',
    ...rows.map(([label, k, target]) => `${label.padEnd(38)} ${String(r.figures[k]).padStart(10)}  (${r.min[k]}–${r.max[k]})${target === '' ? '' : `   target ${target}`}`),
  ];
  return `${lines.join('\n')}\n`;
}
