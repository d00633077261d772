// SPDX-License-Identifier: Apache-2.0
// Which kernel fast paths can run here, and why not. The facts are read from
// the kernel (program, map and helper probes, bpffs, cgroup v2, the built
// object); the decision is pure, so every "why not" is tested.
import fs from 'node:fs';
import path from 'node:path';
import { constants, native } from '@skein/bpf';
import { checkBpffs } from './bpffs.ts';

export type FastpathName = 'connect-lb' | 'kernel-telemetry' | 'same-node';

export interface FastpathState {
  active: boolean;
  reason: string;
}

export type FastpathStatus = Record<FastpathName, FastpathState>;

export interface KernelFacts {
  root: boolean;
  objectPath: string;
  objectBuilt: boolean;
  bpffsMounted: boolean;
  /** Why the pin directory is not on bpffs (a failed mount, another filesystem there). */
  bpffsWhy?: string;
  cgroup2: boolean;
  progSockAddr: boolean;
  progSockOps: boolean;
  mapRingbuf: boolean;
  helperNetnsCookie: boolean;
  helperSetsockopt: boolean;
  helperSocketCookie: boolean;
  progSkLookup: boolean;
  progIterTcp: boolean;
  mapSockhash: boolean;
}

export function offAll(reason: string): FastpathStatus {
  const r = { active: false, reason };
  return { 'connect-lb': r, 'kernel-telemetry': r, 'same-node': r };
}

/** The decision: each path on only if every capability it needs is there. */
export function decideFastpaths(mode: 'auto' | 'off', f: KernelFacts, sameNodeMode: 'kernel' | 'hbone' = 'kernel'): FastpathStatus {
  const off = (reason: string): FastpathState => ({ active: false, reason });
  if (mode === 'off') return offAll('SKEIN_KERNEL_FASTPATH=off');
  const missing: string[] = [];
  if (!f.root) missing.push('privileges to load eBPF (root or CAP_BPF + CAP_NET_ADMIN)');
  if (!f.objectBuilt) missing.push(`the eBPF object ${f.objectPath} (built by npm run setup)`);
  if (!f.bpffsMounted) missing.push(`a bpf filesystem to pin into${f.bpffsWhy === undefined ? '' : ` (${f.bpffsWhy})`}`);
  if (!f.cgroup2) missing.push('the cgroup v2 directory to attach to');
  if (!f.progSockAddr) missing.push('cgroup/connect4 programs');
  if (!f.helperNetnsCookie) missing.push('bpf_get_netns_cookie in cgroup/connect4 (Linux 5.7)');
  if (!f.helperSetsockopt) missing.push('bpf_setsockopt in cgroup/connect4');
  if (!f.helperSocketCookie) missing.push('bpf_get_socket_cookie in cgroup/connect4');
  const telemetryMissing = [...missing];
  if (!f.progSockOps) telemetryMissing.push('sock_ops programs');
  if (!f.mapRingbuf) telemetryMissing.push('ring buffer maps (Linux 5.8)');
  // Steering without telemetry would make connections invisible: both or neither.
  const all = [...new Set([...missing, ...telemetryMissing])];
  const state = all.length === 0 ? { active: true, reason: 'all capabilities present' } : off(`missing: ${all.join('; ')}`);
  const sameMissing = [...all];
  if (!f.progSkLookup) sameMissing.push('sk_lookup programs (Linux 5.9)');
  if (!f.progIterTcp) sameMissing.push('TCP socket iterators with sockhash updates (Linux 5.10)');
  if (!f.mapSockhash) sameMissing.push('sockhash maps');
  const sameNode = sameNodeMode === 'hbone' ? off('SKEIN_SAME_NODE=hbone: same-node traffic keeps mTLS over HBONE')
    : sameMissing.length === 0 ? { active: true, reason: 'all capabilities present' } : off(`missing: ${sameMissing.join('; ')}`);
  return { 'connect-lb': state, 'kernel-telemetry': state, 'same-node': sameNode };
}

function readMounts(): string {
  try {
    return fs.readFileSync('/proc/self/mounts', 'utf8');
  } catch {
    return '';
  }
}

/**
 * Where cgroup v2 is mounted: /sys/fs/cgroup on current distributions,
 * /sys/fs/cgroup/unified on hybrid hosts. Undefined without cgroup v2.
 */
export function cgroup2Mount(): string | undefined {
  const mounts = readMounts().split('\n').map((l) => l.split(' ')).filter((f) => f[2] === 'cgroup2').map((f) => f[1] ?? '');
  return mounts.find((m) => m === '/sys/fs/cgroup') ?? mounts[0];
}

function isMountedType(dir: string, type: string): boolean {
  const mounts = readMounts();
  // The longest mount point that contains `dir` decides its filesystem.
  let best = '';
  let bestType = '';
  for (const line of mounts.split('\n')) {
    const [, mnt, fstype] = line.split(' ');
    if (mnt === undefined || fstype === undefined) continue;
    if ((dir === mnt || dir.startsWith(mnt.endsWith('/') ? mnt : `${mnt}/`)) && mnt.length >= best.length) {
      best = mnt;
      bestType = fstype;
    }
  }
  return bestType === type;
}

function safe(probe: () => boolean): boolean {
  try {
    return probe();
  } catch {
    return false;
  }
}

export function readKernelFacts(o: { objectPath: string; bpffsDir: string; cgroupPath: string }): KernelFacts {
  const c = constants;
  const sockAddr = c.BPF_PROG_TYPE_CGROUP_SOCK_ADDR;
  // The filesystem by its statfs magic, as the kernel sees it.
  const bpffs = checkBpffs(o.bpffsDir);
  return {
    root: process.getuid?.() === 0,
    objectPath: o.objectPath,
    objectBuilt: fs.existsSync(o.objectPath),
    bpffsMounted: bpffs.ok,
    ...(bpffs.ok ? {} : { bpffsWhy: bpffs.reason }),
    cgroup2: isMountedType(o.cgroupPath, 'cgroup2') && fs.existsSync(path.join(o.cgroupPath, 'cgroup.procs')),
    progSockAddr: safe(() => native.probeProgType(sockAddr)),
    progSockOps: safe(() => native.probeProgType(c.BPF_PROG_TYPE_SOCK_OPS)),
    mapRingbuf: safe(() => native.probeMapType(c.BPF_MAP_TYPE_RINGBUF)),
    helperNetnsCookie: safe(() => native.probeHelper(sockAddr, c.BPF_FUNC_get_netns_cookie)),
    helperSetsockopt: safe(() => native.probeHelper(sockAddr, c.BPF_FUNC_setsockopt)),
    helperSocketCookie: safe(() => native.probeHelper(sockAddr, c.BPF_FUNC_get_socket_cookie)),
    progSkLookup: safe(() => native.probeProgType(c.BPF_PROG_TYPE_SK_LOOKUP) && native.probeHelper(c.BPF_PROG_TYPE_SK_LOOKUP, c.BPF_FUNC_sk_assign)),
    // Loading the object proves the iterator; the probe here is its kernel's BTF.
    progIterTcp: fs.existsSync('/sys/kernel/btf/vmlinux'),
    mapSockhash: safe(() => native.probeMapType(c.BPF_MAP_TYPE_SOCKHASH)),
  };
}
