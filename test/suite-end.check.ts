// SPDX-License-Identifier: Apache-2.0
// Runs last in `npm test` (named on the command line after every suite, with
// one test file at a time): nothing a suite created may outlive it.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { cgroup2Root } from './lab/cgroup.ts';
import { LAB_PREFIX } from './lab/plan.ts';
import { listNetns } from './lab/sh.ts';

const needsRoot = process.getuid?.() === 0 ? false : 'needs root (lab namespaces)';

test('no lab namespaces are left', { skip: needsRoot }, () => {
  assert.deepEqual(listNetns().filter((n) => n.startsWith(LAB_PREFIX)), []);
});

test('no lab runs, scratch directories or cgroups are left', { skip: needsRoot }, () => {
  const runs = fs.existsSync('/run/skein-lab') ? fs.readdirSync('/run/skein-lab') : [];
  assert.deepEqual(runs, []);
  assert.equal(fs.existsSync(path.join(cgroup2Root(), 'skein-lab')), false);
});

test('no process started in the lab is still running', () => {
  const stray: string[] = [];
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cg = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8');
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cg.includes('/skein-lab/') || cmd.includes('/run/skein-lab/') || cmd.includes(`/run/netns/${LAB_PREFIX}`)) stray.push(`${pid}: ${cmd}`);
    } catch { /* exited while we looked */ }
  }
  assert.deepEqual(stray, []);
});
