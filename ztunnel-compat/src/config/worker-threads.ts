// SPDX-License-Identifier: Apache-2.0
// How many threads the native HBONE engine runs, as ztunnel sizes its
// worker pool (src/config.rs parse_worker_threads; ztunnel PR #1993 for the
// CPU-aware default): ZTUNNEL_WORKER_THREADS as a number (0: every CPU) or
// a percentage of the CPUs (ZTUNNEL_CPU_LIMIT, which Istio's chart fills
// from the downward API, else the machine's); else ProxyConfig
// `concurrency` (0: every CPU); else the pod's CPU limit
// (ZTUNNEL_RESOURCE_CPU_LIMIT, set by the chart only when there is one) or
// a quarter of the CPUs, at least 2 and at least the pod's CPU request
// (ZTUNNEL_RESOURCE_CPU_REQUEST).

/** The engine's ceiling: past it threads only cost memory. */
export const MAX_WORKER_THREADS = 64;

export interface CpuFacts {
  /** ZTUNNEL_WORKER_THREADS as written. */
  setting: string | undefined;
  /** ProxyConfig `concurrency`. */
  concurrency: number | undefined;
  /** ZTUNNEL_CPU_LIMIT. */
  cpuLimit: number | undefined;
  /** ZTUNNEL_RESOURCE_CPU_LIMIT, ZTUNNEL_RESOURCE_CPU_REQUEST. */
  resourceLimit: number | undefined;
  resourceRequest: number | undefined;
  /** The machine's logical CPUs. */
  cores: number;
}

/** The thread count, or why ZTUNNEL_WORKER_THREADS is not one. */
export function workerThreads(f: CpuFacts): number | { problem: string } {
  const cpus = Math.max(1, f.cpuLimit ?? f.cores);
  const clamp = (n: number): number => Math.min(MAX_WORKER_THREADS, Math.max(1, n));
  if (f.setting !== undefined) {
    const v = f.setting.trim();
    if (v.endsWith('%')) {
      const percent = Number(v.slice(0, -1));
      if (!(percent > 0 && percent <= 100)) return { problem: `'${f.setting}': a percentage must be above 0 and at most 100` };
      return clamp(Math.ceil((cpus * percent) / 100));
    }
    if (!/^\d+$/.test(v)) return { problem: `'${f.setting}' is neither a number of threads nor a percentage of the CPUs` };
    const n = Number(v);
    return clamp(n === 0 ? cpus : n);
  }
  if (f.concurrency !== undefined) return clamp(f.concurrency === 0 ? cpus : f.concurrency);
  const base = f.resourceLimit ?? Math.ceil(cpus / 4);
  return clamp(Math.max(2, base, f.resourceRequest ?? 0));
}
