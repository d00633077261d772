// SPDX-License-Identifier: Apache-2.0
// When a test may skip. A skip is for what this machine cannot have: no root
// (nothing privileged can be checked), or a kernel without the capability
// (no BTF, no cgroup v2, a probe that says no). Anything the machine could
// have — an eBPF object setup builds, a bpf filesystem root can mount, a
// program setup installs — is a FAILURE when missing, not a skip, so that
// `npm test` as root on a capable kernel never passes with the fast paths
// silently unused. SKEIN_TEST_ALLOW_SKIP=1 turns such failures back into
// skips (a developer's partial machine); the README names it.
import fs from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BPFFS_ROOT, ensureBpffs } from '@skein/ztunnel-compat/accel/bpffs';
import { cgroup2Mount, decideFastpaths, readKernelFacts } from '@skein/ztunnel-compat/accel/probe';

export const ALLOW_SKIP = process.env.SKEIN_TEST_ALLOW_SKIP === '1';
export const isRoot = process.getuid?.() === 0;

/** What a test needs, and whether its absence is the machine's limit (skip) or a fault (fail). */
export interface Need {
  /** What is needed, for the message ("the eBPF object", "root"). */
  what: string;
  /** Undefined when present; else why it is missing. */
  missing: string | undefined;
  /** The machine cannot have it (not root, a kernel without it): a skip. Otherwise a failure. */
  impossible: boolean;
}

const failed = new Set<string>();

/**
 * The `skip` option for tests with these needs: false when all are there; the
 * reason when one is missing. A missing need that the machine could have also
 * registers one failing test saying what is missing and how to get it (once
 * per file), unless SKEIN_TEST_ALLOW_SKIP=1.
 */
export function skipUnless(...needs: Need[]): string | false {
  const n = needs.find((x) => x.missing !== undefined);
  if (n?.missing === undefined) return false;
  const reason = `needs ${n.what}: ${n.missing}`;
  if (n.impossible || ALLOW_SKIP) return reason;
  if (!failed.has(reason)) {
    failed.add(reason);
    test(`this machine can run the tests below, so it must: ${n.what}`, () => {
      throw new Error(`${reason} (this machine could have it; set SKEIN_TEST_ALLOW_SKIP=1 to skip instead)`);
    });
  }
  return `${reason} (a failure, reported above)`;
}

/** Root: without it nothing privileged can be checked, so its absence is a skip. */
export function root(why: string): Need {
  return { what: `root (${why})`, missing: isRoot ? undefined : 'not running as root', impossible: true };
}

/** `skip` for a test that needs only root. */
export const needsRoot = (why: string): string | false => skipUnless(root(why));

const BTF = '/sys/kernel/btf/vmlinux';
export const EBPF_OBJECT = fileURLToPath(new URL('../bpf/build/bpf/skein.bpf.o', import.meta.url));

/** The eBPF object: setup builds it wherever the kernel has BTF, so only a BTF-less kernel may skip. */
export function ebpfObject(): Need {
  const btf = fs.existsSync(BTF);
  return {
    what: 'the eBPF object',
    missing: fs.existsSync(EBPF_OBJECT) ? undefined : btf ? `${EBPF_OBJECT} is not built (npm run setup builds it)` : `no kernel BTF (${BTF}) to build ${EBPF_OBJECT} against`,
    impossible: !btf,
  };
}

/** A cgroup v2 mount to attach cgroup programs to (a cgroup v1-only host cannot). */
export function cgroup2(): Need {
  return { what: 'a cgroup v2 mount', missing: cgroup2Mount() === undefined ? 'none in /proc/self/mounts' : undefined, impossible: true };
}

/**
 * A bpf filesystem at /sys/fs/bpf, mounted here when root finds none (as the
 * daemon does): a test pinning under it never meets bare sysfs, where mkdir
 * fails and Node's recursive mkdir spins.
 */
export function bpffsMounted(): Need {
  const s = isRoot ? ensureBpffs(BPFFS_ROOT) : { ok: false as const, reason: 'not running as root' };
  return { what: `a bpf filesystem at ${BPFFS_ROOT}`, missing: s.ok ? undefined : s.reason, impossible: !isRoot };
}

/**
 * What the kernel fast paths need from this kernel (program, map and helper
 * probes, BTF): a kernel without them skips; a bpffs the daemon will mount
 * itself does not count against it.
 */
export function kernelFastpath(path: 'connect-lb' | 'same-node' = 'same-node'): Need {
  if (!isRoot) return { what: `the ${path} kernel fast path`, missing: 'not running as root (the probes need it)', impossible: true };
  const facts = readKernelFacts({ objectPath: EBPF_OBJECT, bpffsDir: `${BPFFS_ROOT}/skein`, cgroupPath: cgroup2Mount() ?? '/sys/fs/cgroup' });
  const s = decideFastpaths('auto', { ...facts, objectBuilt: true, bpffsMounted: true })[path];
  return { what: `the ${path} kernel fast path`, missing: s.active ? undefined : `this kernel lacks it (${s.reason})`, impossible: true };
}

/** Whether this machine supports the kernel fast path `path` (the demo's and the tests' expectation). */
export const kernelSupports = (path: 'connect-lb' | 'same-node' = 'same-node'): boolean => kernelFastpath(path).missing === undefined;

/** A program `npm run setup` installs: missing is a failure. */
export function program(file: string): Need {
  return { what: file, missing: fs.existsSync(file) ? undefined : 'not installed (npm run setup installs it)', impossible: false };
}
