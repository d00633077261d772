// SPDX-License-Identifier: Apache-2.0
// The kernel module in the VM lab: one boot of Debian's kernel runs every
// check of test/vm/kmod-suite.sh (load, register, the data-path cases of
// kmod/test/hbone_vm_test.c plain and over kTLS, the pin while a tunnel
// lives, unload) and each of its lines becomes a test here. A kernel warning
// on the console fails the suite whatever the checks said.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { skipUnless } from '../skips.ts';
import { CRYPTO_ACCEL_MODULES, projectRoot, runInVm, vmImage, type VmResult } from './vm.ts';

const img = vmImage();
// A machine that ran setup has the image: its absence is a failure, not a skip.
const noVm = skipUnless({ what: 'the VM lab image (bash test/setup.sh builds it)', missing: typeof img === 'string' ? img : undefined, impossible: false });
// About 45 s here; bounded under the suite's 2-minute limit per test.
const BOOT_TIMEOUT_MS = 110_000;

test('kmod/ in the VM: loads, carries HBONE DATA over TCP and kTLS, unloads', { skip: noVm, timeout: 118_000 }, async (t) => {
  if (typeof img === 'string') return;
  const r: VmResult = await runInVm(img, {
    modules: ['tls', 'gcm', 'ghash-generic', 'ctr', ...CRYPTO_ACCEL_MODULES],
    files: [
      { path: '/root/skein_hbone.ko', from: img.kmod },
      { path: '/root/hbone_vm_test', from: path.join(img.binDir, 'hbone_vm_test'), mode: 0o755 },
      { path: '/root/hbone_interop', from: path.join(img.binDir, 'hbone_interop'), mode: 0o755 },
      { path: '/root/hbone_interop_server', from: path.join(img.binDir, 'hbone_interop_server'), mode: 0o755 },
    ],
    // The kmod cases, then the interop with Skein's userspace HBONE server,
    // which runs on the project's Node from the host's root shared read-only.
    script: [
      readFileSync(path.join(projectRoot, 'test/vm/kmod-suite.sh'), 'utf8'),
      `SKEIN_ROOT='${projectRoot}'`,
      readFileSync(path.join(projectRoot, 'test/vm/interop-suite.sh'), 'utf8'),
    ].join('\n'),
    shareHostDir: '/',
    memoryMb: 1024,
    timeoutMs: BOOT_TIMEOUT_MS,
  });
  const report = `--- VM output (${r.elapsedMs} ms, ${r.accel})\n${r.output}\n--- console tail\n${r.console.slice(-3000)}`;
  assert.ok(!r.timedOut, `the VM did not finish in ${BOOT_TIMEOUT_MS} ms\n${report}`);
  assert.equal(r.exitCode, 0, report);
  const lines = r.output.split('\n').filter((l) => /^(not )?ok - /.test(l));
  // The checks the suite must report (a missing line is a failure, not a pass).
  const expected = ['load', 'ulp-registered', 'probe-facts', 'no-leaked-references', 'unload-refused-while-live', 'unload', 'ulp-unregistered', 'dmesg-clean'];
  for (const c of ['roundtrip', 'window', 'ping', 'recv_window', 'half_close', 'fallback', 'garbage', 'refusals']) expected.push(`${c}/plain`, `${c}/tls`);
  expected.push('tls_control/tls', 'interop/node-server', 'interop/node-client', 'interop/node-client-bytes', 'engine/kmod', 'engine/kmod-fallback', 'engine/kmod-refusals', 'engine/kmod-peer-ends-first', 'engine/kmod-peer-resets', 'engine/kmod-closed', 'engine/kmod-engine-stop', 'unload-after-interop', 'dmesg-clean-after-interop');
  for (const name of expected) {
    await t.test(name, () => {
      const line = lines.find((l) => l === `ok - ${name}` || l.startsWith(`ok - ${name} (`) || l.startsWith(`not ok - ${name}:`));
      assert.ok(line !== undefined, `no result for ${name}\n${report}`);
      assert.ok(line.startsWith('ok - '), `${line}\n${report}`);
    });
  }
  await t.test('no kernel warning on the console', () => {
    assert.deepEqual(r.kernelWarnings, [], report);
  });
});
