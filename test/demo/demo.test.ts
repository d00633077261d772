// SPDX-License-Identifier: Apache-2.0
// `npm run demo` end to end, as a user runs it (the entry point as a child
// process): every path taken and behaving, JSON that parses, nothing left
// behind — also after Ctrl-C — and a clear refusal without root.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { POLICY_REJECTION_PREFIX } from '../compat/ztunnel-facts.ts';
import { findLeftovers, LAB_PREFIX } from '../lab/index.ts';
import { kernelFastpath, kernelSupports, needsRoot as rootOnly, root, skipUnless } from '../skips.ts';
import type { DemoReport } from './report.ts';

const MAIN = fileURLToPath(new URL('./main.ts', import.meta.url));
const needsRoot = rootOnly('the demo builds a lab');

function assertNothingLeft(): void {
  const left = findLeftovers();
  assert.deepEqual({ netns: left.netns, cgroups: left.cgroups, runs: left.runs }, { netns: [], cgroups: [], runs: [] });
}

test('`npm run demo -- --json`, as the README says it: every path taken, one JSON object on stdout', { skip: needsRoot, timeout: 120_000 }, () => {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const r = spawnSync('npm', ['run', 'demo', '--', '--json'], { cwd: root, encoding: 'utf8', timeout: 110_000 });
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout) as DemoReport;
  const byName = new Map(report.paths.map((p) => [p.path, p]));
  assert.deepEqual([...byName.keys()], ['cross-node-hbone', 'same-node', 'passthrough', 'waypoint', 'denied', 'dns']);
  for (const p of report.paths) {
    assert.ok(p.taken && p.ok, `${p.path}: ${JSON.stringify(p)}`);
    assert.ok(p.latency_ms > 0, `${p.path} latency`);
  }
  assert.equal(byName.get('cross-node-hbone')?.bytes, 1 << 20);
  assert.match(byName.get('cross-node-hbone')?.decision ?? '', /spiffe:\/\/cluster\.local\/ns\/default\/sa\/client → spiffe:\/\/cluster\.local\/ns\/default\/sa\/server over mTLS/);
  // Where the kernel has what the same-node fast path needs (docs/kernel.md), it must be taken.
  if (kernelSupports('same-node')) assert.match(byName.get('same-node')?.decision ?? '', /allowed in the kernel/);
  assert.equal(byName.get('denied')?.bytes, 0);
  // ztunnel's wording for an RBAC denial (test/compat/ztunnel-facts.ts).
  assert.ok((byName.get('denied')?.decision ?? '').includes(`${POLICY_REJECTION_PREFIX}explicitly denied by: default/deny-blocked`), byName.get('denied')?.decision);
  assert.match(byName.get('dns')?.decision ?? '', /answered echo\.default\.svc\.cluster\.local → 10\.96\.0\.10 from WDS; curl then reached server by name/);
  assertNothingLeft();
});

test('where the kernel has the same-node fast path, same-node traffic in userspace fails the demo, saying why', { skip: skipUnless(root('the demo builds a lab'), kernelFastpath('same-node')), timeout: 120_000 }, () => {
  // SKEIN_SAME_NODE=hbone (which the daemons inherit) keeps same-node traffic on HBONE.
  const r = spawnSync(process.execPath, [MAIN, '--json'], { encoding: 'utf8', timeout: 110_000, env: { ...process.env, SKEIN_SAME_NODE: 'hbone' } });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /same-node: not taken, FAILED/);
  const same = (JSON.parse(r.stdout) as DemoReport).paths.find((p) => p.path === 'same-node');
  assert.equal(same?.taken, false);
  assert.equal(same.ok, false);
  assert.match(same.decision, /NOT on the kernel fast path although this machine supports it: .* node0's daemon says: off \(SKEIN_SAME_NODE=hbone/);
  assertNothingLeft();
});

test('Ctrl-C while the demo keeps its lab up removes everything', { skip: needsRoot, timeout: 120_000 }, async () => {
  const child = spawn(process.execPath, [MAIN, '--json', '--keep'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const printed = new Promise<void>((resolve) => {
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); if (out.endsWith('\n')) resolve(); });
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => { resolve(code); }));
  const timer = setTimeout(() => child.kill('SIGKILL'), 100_000);
  await Promise.race([printed, exited]);
  const live = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
  assert.match(live, new RegExp(`^${LAB_PREFIX}`, 'm'), '--keep keeps the lab up');
  child.kill('SIGINT');
  const code = await exited;
  clearTimeout(timer);
  assert.equal(code, 130, err);
  assert.ok((JSON.parse(out) as DemoReport).paths.length > 0);
  assertNothingLeft();
});

test('without root the demo refuses, says why, and creates nothing', () => {
  const nobody = process.getuid?.() === 0
    ? spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, MAIN], { encoding: 'utf8', timeout: 30_000 })
    : spawnSync(process.execPath, [MAIN], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(nobody.status, 1, nobody.stderr);
  assert.match(nobody.stderr, /needs root/);
  assert.equal(nobody.stdout, '');
  if (process.getuid?.() === 0) assertNothingLeft();
});

test('unknown arguments are refused with the usage', () => {
  const r = spawnSync(process.execPath, [MAIN, '--jsno'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /unknown argument '--jsno'[\s\S]*Usage: npm run demo/);
});
