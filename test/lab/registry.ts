// SPDX-License-Identifier: Apache-2.0
// Every lab run registers itself before it creates anything, so that the
// next run can remove what a crashed one left behind: its namespaces (and with
// them its veths and iptables rules) and its cgroups.
import fs from 'node:fs';
import path from 'node:path';
import { cleanupKernel } from '@skein/ztunnel-compat/accel/index';
import { labCgroupBase, removeCgroup } from './cgroup.ts';
import { LAB_PREFIX } from './plan.ts';
import { ipBatch, listNetns } from './sh.ts';

const DIR = '/run/skein-lab';

/** A run's scratch directory (sockets, configs), removed with the run. */
export const runDir = (runId: string): string => path.join(DIR, runId);

interface Entry {
  pid: number;
  /** Start time of the owner process (from /proc/<pid>/stat), against pid reuse. */
  start: string;
  cgroup: string;
}

function procStart(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

export function register(runId: string, cgroup: string): void {
  fs.mkdirSync(DIR, { recursive: true });
  const entry: Entry = { pid: process.pid, start: procStart(process.pid) ?? '', cgroup };
  fs.writeFileSync(path.join(DIR, `${runId}.json`), JSON.stringify(entry));
  fs.mkdirSync(runDir(runId), { recursive: true });
}

export function unregister(runId: string): void {
  fs.rmSync(runDir(runId), { recursive: true, force: true });
  fs.rmSync(path.join(DIR, `${runId}.json`), { force: true });
}

interface Runs {
  live: Set<string>;
  /** Registry files whose owner process is gone (or unreadable). */
  dead: Map<string, Entry | undefined>;
  /** Scratch directories with no registry file. */
  orphanDirs: string[];
}

function readRuns(): Runs {
  const runs: Runs = { live: new Set(), dead: new Map(), orphanDirs: [] };
  let files: string[] = [];
  try { files = fs.readdirSync(DIR); } catch { return runs; }
  for (const f of files) {
    if (!f.endsWith('.json')) {
      if (!files.includes(`${f}.json`)) runs.orphanDirs.push(f);
      continue;
    }
    const runId = f.slice(0, -5);
    let entry: Entry | undefined;
    try { entry = JSON.parse(fs.readFileSync(path.join(DIR, f), 'utf8')) as Entry; } catch { entry = undefined; }
    if (entry !== undefined && procStart(entry.pid) === entry.start) runs.live.add(runId);
    else runs.dead.set(runId, entry);
  }
  return runs;
}

/** Runs whose owner process is alive (this one or a concurrent one). */
export function liveRunIds(): Set<string> {
  return readRuns().live;
}

export interface Leftovers {
  /** Runs whose owner died without tearing down. */
  runs: string[];
  netns: string[];
  cgroups: string[];
  dirs: string[];
}

/**
 * What lab runs left behind: anything whose owning process is gone. Live
 * runs (a concurrent test process) are not leftovers. Reads only.
 */
export function findLeftovers(): Leftovers {
  const { live, dead, orphanDirs } = readRuns();
  const netns = listNetns().filter((n) => n.startsWith(LAB_PREFIX) && !live.has(n.slice(LAB_PREFIX.length).split('-')[0] ?? ''));
  let cgroups: string[] = [];
  try {
    const base = labCgroupBase();
    cgroups = fs.readdirSync(base, { withFileTypes: true }).filter((d) => d.isDirectory() && !live.has(d.name)).map((d) => path.join(base, d.name));
  } catch { /* no base yet */ }
  return { runs: [...dead.keys()], netns, cgroups, dirs: orphanDirs.map((d) => path.join(DIR, d)) };
}

const BPFFS = '/sys/fs/bpf';

/**
 * Skein's eBPF pins of a run: daemons started for a lab run pin under
 * /sys/fs/bpf/skein-lab-<run>-<name>/<node> (their links stay attached to
 * the cgroup root until unpinned, so a crashed run must not leave them).
 */
function runPins(runId: string): string[] {
  try {
    return fs.readdirSync(BPFFS).filter((n) => n.startsWith(`skein-lab-${runId}-`)).map((n) => path.join(BPFFS, n));
  } catch {
    return [];
  }
}

/** Removes everything of lab runs whose owner process no longer exists. */
export function sweepLeftovers(): Leftovers {
  const left = findLeftovers();
  for (const cg of left.cgroups) removeCgroup(cg);
  // After the cgroups: the daemons that held the pins are gone by now.
  for (const runId of left.runs) {
    for (const root of runPins(runId)) {
      for (const node of fs.readdirSync(root)) cleanupKernel(path.join(root, node));
      fs.rmSync(root, { recursive: true, force: true });
    }
  }
  ipBatch(null, left.netns.map((n) => `netns del ${n}`));
  for (const runId of left.runs) unregister(runId);
  for (const d of left.dirs) fs.rmSync(d, { recursive: true, force: true });
  return left;
}
