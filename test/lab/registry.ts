// SPDX-License-Identifier: Apache-2.0
// Every lab run registers itself before it creates anything, so that the
// next run can remove what a crashed one left behind: its namespaces (and with
// them its veths and iptables rules) and its cgroups.
import fs from 'node:fs';
import path from 'node:path';
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

function liveRuns(): Map<string, Entry> {
  const live = new Map<string, Entry>();
  let files: string[] = [];
  try { files = fs.readdirSync(DIR); } catch { return live; }
  for (const f of files) {
    if (!f.endsWith('.json')) {
      // A scratch directory whose run has no registry file any more.
      if (!fs.existsSync(path.join(DIR, `${f}.json`))) fs.rmSync(path.join(DIR, f), { recursive: true, force: true });
      continue;
    }
    const runId = f.slice(0, -5);
    let entry: Entry;
    try {
      entry = JSON.parse(fs.readFileSync(path.join(DIR, f), 'utf8')) as Entry;
    } catch {
      fs.rmSync(path.join(DIR, f), { force: true });
      continue;
    }
    if (procStart(entry.pid) === entry.start) {
      live.set(runId, entry);
    } else {
      // Owner is gone: remove its cgroups now, its namespaces below.
      removeCgroup(entry.cgroup);
      unregister(runId);
    }
  }
  return live;
}

/** Removes everything of lab runs whose owner process no longer exists. */
export function sweepLeftovers(): string[] {
  const live = liveRuns();
  const stale = listNetns().filter((n) => {
    if (!n.startsWith(LAB_PREFIX)) return false;
    const runId = n.slice(LAB_PREFIX.length).split('-')[0] ?? '';
    return !live.has(runId);
  });
  ipBatch(null, stale.map((n) => `netns del ${n}`));
  // Cgroups of runs that are gone, also those whose registry was lost.
  const base = labCgroupBase();
  let cgroups: string[] = [];
  try { cgroups = fs.readdirSync(base, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name); } catch { /* no base yet */ }
  for (const runId of cgroups) {
    if (!live.has(runId)) removeCgroup(path.join(base, runId));
  }
  return stale;
}
