// SPDX-License-Identifier: Apache-2.0
// The bpf filesystem that pins live in, as the kernel sees it (statfs magic),
// not as /proc/self/mounts says: a path is on bpffs when its filesystem is.
import { constants, native } from './native.ts';

/** The f_type (statfs magic) of the filesystem `path` is on; ENOENT when it does not exist. */
export const statfsType = (path: string): number => native.statfsType(path);

/** Whether `path` (which must exist) lies on a bpf filesystem. */
export const isBpffs = (path: string): boolean => native.statfsType(path) === constants.BPF_FS_MAGIC;

/**
 * Mounts a bpf filesystem on the directory `path` unless one is there;
 * concurrent callers mount one (flock). True when this call mounted it.
 */
export const mountBpffs = (path: string): boolean => native.mountBpffs(path);
