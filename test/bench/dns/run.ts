// SPDX-License-Identifier: Apache-2.0
// `npm run bench -- dns`: DNS lookups from an enrolled pod through Skein's
// DNS proxy, for a name it answers from WDS and for one it forwards to the
// upstream, beside the same lookups sent straight to the upstream from a pod
// outside the mesh. dnsperf (Debian) runs in the pods, dnsmasq is the
// upstream; every run is bounded by dnsperf's own time limit.
import fs from 'node:fs';
import path from 'node:path';
import { startSkeinNodes, workloadYaml } from '../paths/skein-nodes.ts';
import { until } from '../../integration/until.ts';
import { Lab, type LabPod } from '../../lab/index.ts';
import { median } from '../measure/stats.ts';

export interface DnsFigures {
  /** Queries per second with four clients asking as fast as answers come. */
  qps: number;
  /** Average latency at a steady 500 queries/s (one client): the proxy's cost, not a queue's. */
  avg_ms: number;
  /** Lost in either run. */
  lost_pct: number;
}

export interface DnsPathReport {
  path: string;
  description: string;
  figures: DnsFigures;
  min: DnsFigures;
  max: DnsFigures;
}

export interface DnsReport {
  scenario: 'dns';
  reps: number;
  duration_s: number;
  paths: DnsPathReport[];
}

export class DnsperfError extends Error {
  override name = 'DnsperfError';
}

/** dnsperf's summary: queries per second, average latency, share lost. */
export function parseDnsperf(out: string): DnsFigures {
  // (One run's view; runDnsBench combines a flood and a steady run.)
  const num = (re: RegExp, what: string): number => {
    const m = re.exec(out);
    if (m?.[1] === undefined) throw new DnsperfError(`no ${what} in dnsperf output:\n${out}`);
    return Number(m[1]);
  };
  return {
    qps: num(/Queries per second:\s+([\d.]+)/, 'queries per second'),
    avg_ms: num(/Average Latency \(s\):\s+([\d.]+)/, 'average latency') * 1000,
    lost_pct: num(/Queries lost:\s+\d+ \(([\d.]+)%\)/, 'lost queries'),
  };
}

const SERVICE = { hostname: 'echo.default.svc.cluster.local', vip: '10.96.0.10' };
const UPSTREAM_NAME = 'upstream.test';

interface DnsPath {
  name: string;
  description: string;
  from: string;
  qname: string;
}

const PATHS: DnsPath[] = [
  { name: 'direct', description: 'a pod outside the mesh → dnsmasq (no proxy)', from: 'plain', qname: UPSTREAM_NAME },
  { name: 'skein-forwarded', description: 'enrolled pod → istio-cni capture → Skein (15053) → dnsmasq', from: 'client', qname: UPSTREAM_NAME },
  { name: 'skein-answered', description: 'enrolled pod → istio-cni capture → Skein answers from WDS', from: 'client', qname: SERVICE.hostname },
];

async function dnsperfOnce(pod: LabPod, server: string, file: string, durationS: number, extra: string[]): Promise<DnsFigures> {
  // Two seconds of patience per query; -l bounds the run.
  const r = await pod.exec('dnsperf', ['-s', server, '-d', file, '-l', String(durationS), '-t', '2', ...extra], { timeoutMs: (durationS + 15) * 1000 });
  if (r.code !== 0) throw new DnsperfError(`dnsperf exited ${r.code ?? r.signal}: ${r.stderr.trim() || r.stdout.trim()}`);
  return parseDnsperf(r.stdout);
}

async function dnsperf(pod: LabPod, server: string, file: string, durationS: number): Promise<DnsFigures> {
  const flood = await dnsperfOnce(pod, server, file, durationS, ['-c', '4']);
  const steady = await dnsperfOnce(pod, server, file, durationS, ['-c', '1', '-Q', '500']);
  return { qps: flood.qps, avg_ms: steady.avg_ms, lost_pct: Math.max(flood.lost_pct, steady.lost_pct) };
}

export async function runDnsBench(o: { reps: number; durationS: number; log: (s: string) => void }): Promise<DnsReport> {
  const lab = Lab.create({ nodes: [{ pods: [{ name: 'client', serviceAccount: 'client' }, { name: 'plain', serviceAccount: 'plain' }, { name: 'dns', serviceAccount: 'dns' }] }] });
  let teardownSkein = (): Promise<void> => Promise.resolve();
  let dnsmasq: number | undefined;
  try {
    const dnsPod = lab.pod('dns');
    dnsmasq = dnsPod.spawn('dnsmasq', ['--keep-in-foreground', '--no-resolv', '--no-hosts', '--bind-interfaces', `--listen-address=${dnsPod.ip4}`,
      `--host-record=${UPSTREAM_NAME},192.0.2.10`, '--cache-size=1000', '--log-facility=/dev/null'], { stdio: 'ignore' }).pid;
    await until('dnsmasq listening', () => dnsPod.run('ss', '-Hlun').includes(':53'));
    const resolv = path.join(lab.dir, 'resolv.conf');
    fs.writeFileSync(resolv, `nameserver ${dnsPod.ip4}\n`);
    const client = lab.pod('client');
    const skein = await startSkeinNodes(lab, {
      name: 'dns', nodes: [client.node], enroll: [client], fastpath: 'off', env: { SKEIN_DNS_RESOLV_CONF: resolv },
      mesh: `workloads:\n${workloadYaml(client)}services:\n- {name: echo, namespace: default, hostname: ${SERVICE.hostname}, vips: ["/${SERVICE.vip}"], ports: {80: 8080}}\n`,
    });
    teardownSkein = skein.teardown;
    o.log(`lab ${lab.plan.runId} up; dnsmasq in ${dnsPod.name}, Skein on ${client.node.name} with ${client.name} enrolled`);
    const runs = new Map<string, DnsFigures[]>(PATHS.map((p) => [p.name, []]));
    for (let rep = 1; rep <= o.reps; rep++) {
      for (const p of PATHS) {
        const file = path.join(lab.dir, `${p.name}.queries`);
        fs.writeFileSync(file, `${p.qname} A\n`);
        const f = await dnsperf(lab.pod(p.from), dnsPod.ip4, file, o.durationS);
        runs.get(p.name)?.push(f);
        o.log(`[rep ${rep}/${o.reps}] ${p.name}: ${Math.round(f.qps)} queries/s, avg ${f.avg_ms.toFixed(3)} ms, ${f.lost_pct}% lost`);
      }
    }
    const pick = (xs: DnsFigures[], f: (v: number[]) => number): DnsFigures => ({
      qps: Math.round(f(xs.map((x) => x.qps))),
      avg_ms: Math.round(f(xs.map((x) => x.avg_ms)) * 1000) / 1000,
      lost_pct: f(xs.map((x) => x.lost_pct)),
    });
    return {
      scenario: 'dns', reps: o.reps, duration_s: o.durationS,
      paths: PATHS.map((p) => {
        const xs = runs.get(p.name) ?? [];
        return { path: p.name, description: p.description, figures: pick(xs, median), min: pick(xs, (v) => Math.min(...v)), max: pick(xs, (v) => Math.max(...v)) };
      }),
    };
  } finally {
    try { if (dnsmasq !== undefined) process.kill(dnsmasq, 'SIGKILL'); } catch { /* gone */ }
    await teardownSkein();
    lab.teardown();
  }
}

export function dnsTable(r: DnsReport): string {
  const lines = [
    `scenario dns: lookups of one name, ${r.duration_s} s per run, median (min–max) of ${r.reps} repetitions`,
    '',
    `${'path'.padEnd(18)}${'queries/s (flood)'.padEnd(26)}${'avg ms at 500/s'.padEnd(28)}lost %`,
  ];
  for (const p of r.paths) {
    const range = (k: keyof DnsFigures): string => `${p.figures[k]} (${p.min[k]}–${p.max[k]})`;
    lines.push(`${p.path.padEnd(18)}${range('qps').padEnd(26)}${range('avg_ms').padEnd(28)}${p.figures.lost_pct}`);
  }
  lines.push('', ...r.paths.map((p) => `  ${p.path}: ${p.description}`), '');
  return lines.join('\n');
}
