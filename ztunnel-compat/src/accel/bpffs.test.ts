// SPDX-License-Identifier: Apache-2.0
// The bpf filesystem on a fresh machine: nothing mounted on /sys/fs/bpf.
// Each privileged case runs in a private mount namespace where /sys/fs/bpf is
// bare sysfs again (test/lab/bpffs.ts), so this machine's own mount is never
// touched; what the child mounts dies with it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { withoutBpffs } from '../../../test/lab/bpffs.ts';
import { EBPF_OBJECT, ebpfObject, root, skipUnless } from '../../../test/skips.ts';
import { ensureBpffs, mountPointFor, nearestExisting } from './bpffs.ts';

const needsRoot = skipUnless(root('mount namespaces, mount(2)'));
const needsObject = skipUnless(root('mount namespaces, eBPF'), ebpfObject());
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'skein-bpffs-'));
after(() => { fs.rmSync(tmp, { recursive: true, force: true }); });

const url = (f: string): string => pathToFileURL(path.join(import.meta.dirname, f)).href;

/**
 * Runs `body` (ES module code; `b` is ./bpffs.ts, `k` ./kernel.ts, `bpfMounts()`
 * counts bpf filesystems on /sys/fs/bpf) where none is mounted, after the
 * shell command `before`; returns its stdout as JSON.
 */
function fresh(body: string, before = ':'): unknown {
  const script = `const b = await import(${JSON.stringify(url('bpffs.ts'))});
const k = await import(${JSON.stringify(url('kernel.ts'))});
const fs = await import('node:fs');
const bpfMounts = () => fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\\n').filter((l) => l.split(' ')[4] === '/sys/fs/bpf' && / - bpf /.test(l)).length;
${body}`;
  const c = withoutBpffs(process.execPath, ['--input-type=module', '-e', script], before);
  const r = spawnSync(c.cmd, c.args, { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, `child failed (${r.status ?? r.signal ?? ''}): ${r.stderr}`);
  return JSON.parse(r.stdout) as unknown;
}

test('the mount point is /sys/fs/bpf for directories under it, and nothing else is ever mounted over', () => {
  assert.equal(mountPointFor('/sys/fs/bpf/skein/node0'), '/sys/fs/bpf');
  assert.equal(mountPointFor('/sys/fs/bpf'), '/sys/fs/bpf');
  assert.equal(mountPointFor('/sys/fs/bpfx/skein'), undefined);
  assert.equal(mountPointFor('/var/lib/skein'), undefined);
  assert.equal(nearestExisting(path.join(tmp, 'a', 'b', 'c')), tmp);
  assert.equal(nearestExisting(tmp), tmp);
});

test('a pin directory outside /sys/fs/bpf and off bpffs is refused with how to fix it, and nothing is created', () => {
  const dir = path.join(tmp, 'pins', 'node0');
  const s = ensureBpffs(dir);
  assert.equal(s.ok, false);
  assert.match(s.reason, /is not on a bpf filesystem .*mount -t bpf bpffs/);
  assert.equal(fs.existsSync(path.join(tmp, 'pins')), false);
  const rel = ensureBpffs('pins/node0');
  assert.match(rel.ok ? '' : rel.reason, /must be an absolute path/);
});

test('with nothing on /sys/fs/bpf, ensureBpffs mounts one bpffs there, once; a second call finds it', { skip: needsRoot }, () => {
  const out = fresh(`
const before = bpfMounts();
const first = b.ensureBpffs('/sys/fs/bpf/skein/node0');
const second = b.ensureBpffs('/sys/fs/bpf/skein/node0');
console.log(JSON.stringify({ before, first, second, after: bpfMounts() }));`);
  assert.deepEqual(out, { before: 0, first: { ok: true, mounted: '/sys/fs/bpf' }, second: { ok: true }, after: 1 });
});

test('two daemons starting at once on a fresh machine mount one bpffs between them, not two stacked', { skip: needsRoot }, () => {
  // Both children share the namespace the parent made bare; each races to mount.
  const out = fresh(`
const { spawn } = await import('node:child_process');
const racer = \`const b = await import(\${JSON.stringify(${JSON.stringify(url('bpffs.ts'))})}); console.log(JSON.stringify(b.ensureBpffs('/sys/fs/bpf/skein/x')));\`;
const run = () => new Promise((resolve) => { let o = ''; const c = spawn(process.execPath, ['--input-type=module', '-e', racer]); c.stdout.on('data', (d) => { o += d; }); c.on('exit', () => resolve(JSON.parse(o))); });
const results = await Promise.all([run(), run(), run()]);
console.log(JSON.stringify({ mounted: results.filter((r) => r.mounted !== undefined).length, ok: results.every((r) => r.ok), after: bpfMounts() }));`);
  assert.deepEqual(out, { mounted: 1, ok: true, after: 1 });
});

test('another filesystem on /sys/fs/bpf is left alone: the reason says so and nothing is mounted over it', { skip: needsRoot }, () => {
  const out = fresh(`
console.log(JSON.stringify({ s: b.ensureBpffs('/sys/fs/bpf/skein/node0'), after: bpfMounts() }));`, 'mount -t tmpfs none /sys/fs/bpf') as { s: { ok: boolean; reason?: string }; after: number };
  assert.equal(out.s.ok, false);
  assert.match(out.s.reason ?? '', /not over another filesystem/);
  assert.equal(out.after, 0);
});

test('loading the programs with no bpffs fails at once with the reason, never spinning in mkdir', { skip: needsObject, timeout: 30_000 }, () => {
  const out = fresh(`
let err;
try { k.KernelState.open({ objectPath: ${JSON.stringify(EBPF_OBJECT)}, bpffsDir: '/sys/fs/bpf/skein-fresh/node0', cgroupPath: '/sys/fs/cgroup' }); } catch (e) { err = e; }
console.log(JSON.stringify({ name: err?.name, message: err?.message }));`) as { name?: string; message?: string };
  assert.equal(out.name, 'KernelError', JSON.stringify(out));
  assert.match(out.message ?? '', /\/sys\/fs\/bpf\/skein-fresh\/node0 is not on a bpf filesystem/);
});
