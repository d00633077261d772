// SPDX-License-Identifier: Apache-2.0
// The bpf filesystem the pins live in. A fresh machine has /sys/fs/bpf (an
// empty sysfs directory) with nothing mounted on it; there every pin fails,
// and mkdir under it returns ENOENT (Node's recursive mkdir retries that
// forever). So, as Cilium's agent does, the daemon checks the filesystem by
// its statfs magic and mounts bpffs at /sys/fs/bpf when none is there; it
// never creates a directory that would not be on bpffs.
import fs from 'node:fs';
import path from 'node:path';
import { constants, mountBpffs, statfsType } from '@skein/bpf';

/** Where the kernel expects bpffs (sysfs provides this empty directory for it). */
export const BPFFS_ROOT = '/sys/fs/bpf';

export type BpffsStatus =
  /** `mounted`: this call mounted bpffs there (none was mounted). */
  | { ok: true; mounted?: string }
  | { ok: false; reason: string };

/** `dir` itself or its nearest ancestor that exists. */
export function nearestExisting(dir: string): string {
  let d = path.resolve(dir);
  for (;;) {
    try {
      fs.statSync(d);
      return d;
    } catch {
      const up = path.dirname(d);
      if (up === d) return d;
      d = up;
    }
  }
}

/** Where a bpffs for `dir` may be mounted: only the standard root, and only for a directory under it. */
export function mountPointFor(dir: string): string | undefined {
  const d = path.resolve(dir);
  return d === BPFFS_ROOT || d.startsWith(`${BPFFS_ROOT}/`) ? BPFFS_ROOT : undefined;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/** Whether `dir` is, or once created will be, on bpffs. Creates and mounts nothing. */
export function checkBpffs(dir: string): BpffsStatus & { existing: string; magic: number } {
  if (!path.isAbsolute(dir)) return { ok: false, reason: `the pin directory must be an absolute path, not '${dir}'`, existing: dir, magic: 0 };
  const existing = nearestExisting(dir);
  let magic: number;
  try {
    magic = statfsType(existing);
  } catch (err) {
    return { ok: false, reason: `cannot tell the filesystem of ${existing}: ${(err as Error).message}`, existing, magic: 0 };
  }
  if (magic === constants.BPF_FS_MAGIC) return { ok: true, existing, magic };
  return { ok: false, reason: `${dir} is not on a bpf filesystem (${existing} has filesystem magic ${hex(magic)})`, existing, magic };
}

/**
 * checkBpffs, and when there is no bpffs, mounts one at /sys/fs/bpf if the
 * pin directory is under it and /sys/fs/bpf is still the kernel's empty sysfs
 * directory (never over another filesystem someone mounted there). Needs
 * CAP_SYS_ADMIN; a failure is a reason, not an exception.
 */
export function ensureBpffs(dir: string): BpffsStatus {
  const c = checkBpffs(dir);
  if (c.ok || c.magic === 0) return c.ok ? { ok: true } : { ok: false, reason: c.reason };
  const at = mountPointFor(dir);
  if (at === undefined) {
    return { ok: false, reason: `${c.reason}; mount one there (mount -t bpf bpffs <dir>) or pin under ${BPFFS_ROOT}, where Skein mounts it itself` };
  }
  if (c.existing !== at || c.magic !== constants.SYSFS_MAGIC) {
    return { ok: false, reason: `${c.reason}; Skein mounts bpffs only on the kernel's empty ${at}, not over another filesystem` };
  }
  let mounted: boolean;
  try {
    mounted = mountBpffs(at);
  } catch (err) {
    return { ok: false, reason: `${c.reason}, and mounting one at ${at} failed: ${(err as Error).message}` };
  }
  const after = checkBpffs(dir);
  if (!after.ok) return { ok: false, reason: after.reason };
  return mounted ? { ok: true, mounted: at } : { ok: true };
}
