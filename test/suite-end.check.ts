// SPDX-License-Identifier: Apache-2.0
// Runs last in `npm test` (named on the command line after every suite, with
// one test file at a time): nothing a suite created may outlive it.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { findLeftovers, liveRunIds } from './lab/registry.ts';
import { listNetns } from './lab/sh.ts';
import { needsRoot as rootOnly } from './skips.ts';

const needsRoot = rootOnly('lab namespaces');

// Runs of a concurrent process (another suite on the same machine) are alive
// and not counted; anything whose owner is gone is a leak.
test('no lab namespaces, runs, scratch directories or cgroups are left', { skip: needsRoot }, () => {
  assert.deepEqual(findLeftovers(), { runs: [], netns: [], cgroups: [], dirs: [] });
});

test('no test namespaces outside the lab are left', { skip: needsRoot }, () => {
  const mine = listNetns().filter((n) => n.startsWith('skein-t') && !fs.existsSync(`/proc/${n.slice(7).split('-')[0] ?? ''}`));
  assert.deepEqual(mine, []);
});

test('no pinned Skein eBPF state is left (every daemon a suite ran was cleaned up)', { skip: needsRoot }, () => {
  let left: string[] = [];
  try { left = fs.readdirSync('/sys/fs/bpf').filter((n) => n.startsWith('skein')); } catch { /* no bpffs */ }
  assert.deepEqual(left, []);
});

test('no process started in the lab is still running', () => {
  const stray: string[] = [];
  const live = liveRunIds();
  // The run a process belongs to, from its cgroup or the lab paths it names.
  const runOf = /(?:\/skein-lab\/|\/run\/netns\/skl-)([a-z0-9]+)/;
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      // A zombie is not running; it waits for a parent that may never reap it
      // (this machine's init does not), so it is not a leak of ours.
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') continue;
      const text = `${fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8')} ${fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')}`;
      const run = runOf.exec(text)?.[1];
      if (run !== undefined && !live.has(run)) stray.push(`${pid}: ${text.replaceAll('\n', ' ')}`);
    } catch { /* exited while we looked */ }
  }
  assert.deepEqual(stray, []);
});
