// SPDX-License-Identifier: Apache-2.0
// The VM lab itself: module dependency order, the warning scan, and that a
// boot returns the script's output and status, and is killed when time is up.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { skipUnless } from '../skips.ts';
import { kernelWarnings, moduleDepends, resolveModules, runInVm, vmImage } from './vm.ts';

const img = vmImage();
// A machine that ran setup has the image: its absence is a failure, not a skip.
const noVm = skipUnless({ what: 'the VM lab image (bash test/setup.sh builds it)', missing: typeof img === 'string' ? img : undefined, impossible: false });

test('depends= is read from .modinfo', () => {
  const ko = Buffer.from('\x7fELF...\0license=GPL\0depends=gf128mul,crypto-simd\0name=ghash_generic\0');
  assert.deepEqual(moduleDepends(ko), ['gf128mul', 'crypto_simd']);
  assert.deepEqual(moduleDepends(Buffer.from('\0depends=\0')), []);
  assert.deepEqual(moduleDepends(Buffer.from('no modinfo')), []);
});

test('modules resolve dependencies first, from Debian\'s tree', { skip: noVm }, () => {
  if (typeof img === 'string') return;
  const order = resolveModules(img.modulesDir, ['ghash-generic', 'tls']);
  // ghash-generic needs gf128mul (modinfo of Debian's 6.1 module).
  assert.deepEqual(order.map((p) => p.split('/').pop()), ['gf128mul.ko', 'ghash-generic.ko', 'tls.ko']);
  assert.throws(() => resolveModules(img.modulesDir, ['no-such-module']), /no module no_such_module/);
});

test('the warning scan catches WARN, BUG and oopses, not ordinary lines', () => {
  const log = [
    '[    4.4] skein_hbone: loading out-of-tree module taints kernel.',
    '[    5.1] WARNING: CPU: 0 PID: 61 at net/core/sock.c:1 x+0x1/0x2',
    '[    5.2] BUG: kernel NULL pointer dereference, address: 0000000000000000',
    '[    5.3] Call Trace:',
  ].join('\n');
  assert.equal(kernelWarnings(log).length, 3);
});

test('a script\'s output and exit status come back from the VM', { skip: noVm, timeout: 110_000 }, async () => {
  if (typeof img === 'string') return;
  const r = await runInVm(img, { script: 'uname -r; echo to-stderr >&2; exit 7', timeoutMs: 100_000 });
  assert.equal(r.timedOut, false);
  assert.equal(r.exitCode, 7, r.console);
  assert.equal(r.output, `${img.release}\nto-stderr\n`);
  assert.deepEqual(r.kernelWarnings, []);
});

test('a VM that runs out of time is killed, and qemu is gone', { skip: noVm, timeout: 60_000 }, async () => {
  if (typeof img === 'string') return;
  const r = await runInVm(img, { script: 'sleep 600', timeoutMs: 2_000 });
  assert.equal(r.timedOut, true);
  assert.equal(r.exitCode, null);
  const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
  assert.ok(!ps.includes('skein-vm-'), 'a qemu of ours is still running');
});
