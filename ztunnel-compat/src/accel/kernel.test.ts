// SPDX-License-Identifier: Apache-2.0
// Pinned state across daemons: the next daemon adopts programs of its own
// build, and replaces those of another build (an upgrade) instead of letting
// old programs run on. Real kernel, a throwaway cgroup and bpffs directory.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { bpffsMounted, cgroup2, ebpfObject, root, skipUnless } from '../../../test/skips.ts';
import { KernelState } from './kernel.ts';
import { cgroup2Mount } from './probe.ts';

const SOURCE = fileURLToPath(new URL('../../../bpf/progs/skein.bpf.c', import.meta.url));
const BUILT = fileURLToPath(new URL('../../../bpf/build/bpf/', import.meta.url));
const INCLUDE = fileURLToPath(new URL('../../../bpf/include', import.meta.url));
const cg2 = cgroup2Mount();
const why = skipUnless(root('eBPF'), ebpfObject(), cgroup2(), bpffsMounted());

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'skein-kernel-'));
const bpffs = `/sys/fs/bpf/skein-kernel-test-${process.pid}`;
const cgroup = path.join(cg2 ?? '/nonexistent', `skein-kernel-test-${process.pid}`);

after(() => {
  KernelState.cleanup(bpffs);
  try { fs.rmdirSync(cgroup); } catch { /* not created */ }
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('the same build is adopted; another build of the programs replaces the pinned one', { skip: why }, () => {
  fs.mkdirSync(cgroup, { recursive: true });
  const same = path.join(BUILT, 'skein.bpf.o');
  // Same source and map layouts, other instructions: what an upgrade looks like to the kernel.
  const other = path.join(tmp, 'other.bpf.o');
  execFileSync('clang', ['-O1', '-g', '-target', 'bpf', '-D__TARGET_ARCH_x86', `-I${BUILT}`, `-I${INCLUDE}`, '-c', SOURCE, '-o', other]);

  const first = KernelState.open({ objectPath: same, bpffsDir: bpffs, cgroupPath: cgroup });
  assert.equal(first.adopted, false);
  first.close();
  const again = KernelState.open({ objectPath: same, bpffsDir: bpffs, cgroupPath: cgroup });
  assert.equal(again.adopted, true, 'a restart of the same build adopts');
  again.close();
  const upgraded = KernelState.open({ objectPath: other, bpffsDir: bpffs, cgroupPath: cgroup });
  assert.equal(upgraded.adopted, false, 'another build is loaded afresh, not adopted');
  upgraded.close();
  const attached = execFileSync('bpftool', ['cgroup', 'show', cgroup], { encoding: 'utf8' });
  // One of each program, not the old ones beside the new.
  assert.equal(attached.match(/skein_connect4/g)?.length, 1, attached);
});
