// SPDX-License-Identifier: Apache-2.0
// CPU% and RSS of proxy processes over a load window, read from /proc: the
// kernel's own accounting, so a proxy cannot under-report itself, and cheap
// enough (one small read per process every 200 ms) not to disturb the run.
// Kernel work done in softirq context (the TCP/IP stack on receive) is not
// charged to any process, so these figures are the proxies' own share only.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

/** A process whose cost a path reports, under a stable name (`haproxy-node0`). */
export interface ProxyProcess {
  name: string;
  pid: number;
}

export interface ProcessLoad {
  /** CPU time over wall time of the window; 100 is one core busy. */
  cpuPct: number;
  /** Highest resident set size seen in the window. */
  rssMb: number;
}

export interface Sampler {
  /** Ends the window; throws if a process died during it. */
  stop(): Record<string, ProcessLoad>;
  /** Ends the window without figures (the load failed). */
  cancel(): void;
}

export class ProcessGoneError extends Error {
  override name = 'ProcessGoneError';
}

/** utime + stime in clock ticks, from the text of /proc/<pid>/stat. */
export function parseStatTicks(stat: string): number {
  // The command name may contain spaces and parentheses; fields follow the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`unexpected /proc/<pid>/stat: ${stat}`);
  return utime + stime;
}

/** VmRSS in MiB, from the text of /proc/<pid>/status. */
export function parseStatusRssMb(status: string): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (m?.[1] === undefined) throw new Error('no VmRSS in /proc/<pid>/status (a kernel thread or a zombie?)');
  return Number(m[1]) / 1024;
}

let clockTicks: number | undefined;
/** USER_HZ, the unit of utime/stime (100 on every mainstream kernel, but asked, not assumed). */
function ticksPerSecond(): number {
  clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  return clockTicks;
}

function read(p: ProxyProcess, file: 'stat' | 'status'): string {
  try {
    return fs.readFileSync(`/proc/${p.pid}/${file}`, 'utf8');
  } catch {
    throw new ProcessGoneError(`${p.name} (pid ${p.pid}) is gone`);
  }
}

/** Starts sampling now; `stop()` closes the window and returns figures per process name. */
export function sampleProcesses(procs: readonly ProxyProcess[], intervalMs = 200): Sampler {
  const t0 = performance.now();
  const start = procs.map((p) => parseStatTicks(read(p, 'stat')));
  const peak = procs.map((p) => parseStatusRssMb(read(p, 'status')));
  const sampleRss = (): void => {
    procs.forEach((p, i) => { peak[i] = Math.max(peak[i] ?? 0, parseStatusRssMb(read(p, 'status'))); });
  };
  const timer = setInterval(() => {
    // A death is reported by stop(); an interval callback must not throw.
    try { sampleRss(); } catch { /* reported at stop */ }
  }, intervalMs);
  // A window left open by a failed run must not keep the process alive.
  timer.unref();
  return {
    cancel(): void {
      clearInterval(timer);
    },
    stop(): Record<string, ProcessLoad> {
      clearInterval(timer);
      sampleRss();
      const seconds = (performance.now() - t0) / 1000;
      const out: Record<string, ProcessLoad> = {};
      procs.forEach((p, i) => {
        const ticks = parseStatTicks(read(p, 'stat')) - (start[i] ?? 0);
        out[p.name] = { cpuPct: (100 * ticks) / ticksPerSecond() / seconds, rssMb: peak[i] ?? 0 };
      });
      return out;
    },
  };
}

/** Runs `load` while sampling `procs`; the window closes however the load ends. */
export async function sampleDuring<T>(procs: readonly ProxyProcess[], load: () => Promise<T>): Promise<[T, Record<string, ProcessLoad>]> {
  const sampler = sampleProcesses(procs);
  let value: T;
  try {
    value = await load();
  } catch (e) {
    sampler.cancel();
    throw e;
  }
  return [value, sampler.stop()];
}
