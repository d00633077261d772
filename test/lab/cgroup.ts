// SPDX-License-Identifier: Apache-2.0
// One cgroup v2 directory per pod, so that per-pod processes can be found
// (and, later, cgroup BPF programs attached) the way a kubelet arranges it.
import fs from 'node:fs';
import path from 'node:path';

/** Where cgroup v2 is mounted (pure v2 or the hybrid 'unified' mount). */
export function cgroup2Root(): string {
  const mounts = fs.readFileSync('/proc/mounts', 'utf8').split('\n');
  for (const line of mounts) {
    const [, mnt, type] = line.split(' ');
    if (type === 'cgroup2' && mnt !== undefined) return mnt;
  }
  throw new Error('no cgroup v2 mount found in /proc/mounts');
}

export const labCgroupBase = (): string => path.join(cgroup2Root(), 'skein-lab');

export function createCgroup(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
}

export function cgroupPids(dir: string): number[] {
  try {
    return fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter((l) => l !== '').map(Number);
  } catch {
    return [];
  }
}

/**
 * Kills every process in the cgroup (by PID, SIGKILL), waits for it to empty
 * (bounded), then removes the directory and any children.
 */
export function removeCgroup(dir: string): void {
  if (!fs.existsSync(dir)) return;
  for (const child of fs.readdirSync(dir, { withFileTypes: true })) {
    if (child.isDirectory()) removeCgroup(path.join(dir, child.name));
  }
  const deadline = Date.now() + 5000;
  for (let pids = cgroupPids(dir); pids.length > 0; pids = cgroupPids(dir)) {
    for (const pid of pids) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
    }
    if (Date.now() > deadline) throw new Error(`cgroup ${dir} still has processes ${pids.join(',')}`);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
  }
  // A just-killed process can keep the cgroup busy until it is reaped.
  for (;;) {
    try {
      fs.rmdirSync(dir);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EBUSY' || Date.now() > deadline) throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
    }
  }
}
