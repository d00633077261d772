// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { cpioArchive } from './cpio.ts';
import { vmDir } from './vm.ts';

test('newc records: magic, 4-byte alignment, the trailer last', () => {
  const a = cpioArchive([{ kind: 'file', path: '/a', data: Buffer.from('xyz') }]);
  assert.equal(a.subarray(0, 6).toString(), '070701');
  // 110-byte header + "a\0" = 112 (aligned), then 3 data bytes padded to 4.
  assert.equal(a.subarray(112, 115).toString(), 'xyz');
  assert.equal(a.readUInt8(115), 0);
  assert.equal(a.subarray(116, 122).toString(), '070701');
  assert.ok(a.includes('TRAILER!!!\0'));
  assert.equal(a.length % 4, 0);
});

test('bad paths are refused', () => {
  assert.throws(() => cpioArchive([{ kind: 'dir', path: '/' }]), /bad path/);
  assert.throws(() => cpioArchive([{ kind: 'dir', path: '/a/../b' }]), /bad path/);
});

// The reader that matters is the kernel's; busybox's cpio (the same newc
// rules, fetched by setup for the VM) stands in for it on the host.
const busybox = path.join(vmDir, 'root/bin/busybox');
test('busybox cpio extracts what we pack, byte for byte', { skip: fs.existsSync(busybox) ? false : 'no busybox in .skein/vm (bash test/setup.sh)' }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skein-cpio-'));
  try {
    const blob = Buffer.from(Array.from({ length: 1001 }, (_, i) => i % 251));
    const a = cpioArchive([
      { kind: 'dir', path: '/d' },
      { kind: 'file', path: '/d/blob', data: blob, mode: 0o755 },
      { kind: 'file', path: '/d/odd', data: Buffer.from('1234567') },
      { kind: 'symlink', path: '/d/link', target: 'blob' },
    ]);
    execFileSync(busybox, ['cpio', '-i', '-d'], { cwd: dir, input: a, stdio: ['pipe', 'ignore', 'pipe'], timeout: 10_000 });
    assert.deepEqual(fs.readFileSync(path.join(dir, 'd/blob')), blob);
    assert.equal(fs.statSync(path.join(dir, 'd/blob')).mode & 0o777, 0o755);
    assert.equal(fs.readFileSync(path.join(dir, 'd/odd'), 'utf8'), '1234567');
    assert.equal(fs.readlinkSync(path.join(dir, 'd/link')), 'blob');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
