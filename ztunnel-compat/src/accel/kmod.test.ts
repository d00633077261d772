// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { decideKmod, KMOD_ULP_NAME, readKmodFacts } from './kmod.ts';

test('the name is the one kmod/skein_hbone.h registers', () => {
  const header = fs.readFileSync(new URL('../../../kmod/skein_hbone.h', import.meta.url), 'utf8');
  assert.match(header, new RegExp(`#define SKEIN_HBONE_ULP_NAME "${KMOD_ULP_NAME}"`));
});

test('the decision names each missing piece, and is off when told', () => {
  const rows: [boolean, boolean, RegExp][] = [
    [false, false, /^missing: the skein_hbone module \(kmod\/, see docs\/kernel.md\); kTLS \(the tls module\)$/],
    [false, true, /^missing: the skein_hbone module \(kmod\/, see docs\/kernel.md\)$/],
    [true, false, /^missing: kTLS \(the tls module\)$/],
    [true, true, /^missing: the native HBONE engine \(SKEIN_HBONE_ENGINE=native: not built\)$/],
  ];
  for (const [moduleLive, ktls, reason] of rows) {
    const s = decideKmod('auto', { moduleLive, ktls }, { active: !(moduleLive && ktls), reason: 'not built' });
    assert.equal(s.active, false);
    assert.match(s.reason, reason);
  }
  // With the engine, the module and kTLS: the engine hands tunnels over.
  assert.deepEqual(decideKmod('auto', { moduleLive: true, ktls: true }, { active: true }), { active: true, reason: 'module, kTLS and the native HBONE engine present' });
  assert.equal(decideKmod('auto', { moduleLive: false, ktls: true }, { active: true }).active, false);
  assert.equal(decideKmod('off', { moduleLive: true, ktls: true }, { active: true }).reason, 'SKEIN_KERNEL_FASTPATH=off');
});

test('the facts are read from sysfs and procfs', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skein-kmod-'));
  const roots = { sys: path.join(dir, 'sys'), proc: path.join(dir, 'proc') };
  try {
    assert.deepEqual(readKmodFacts(roots), { moduleLive: false, ktls: false });
    // A module being unloaded says "going" (kernel/module/sysfs.c): not live.
    fs.mkdirSync(path.join(roots.sys, 'module/skein_hbone'), { recursive: true });
    fs.writeFileSync(path.join(roots.sys, 'module/skein_hbone/initstate'), 'going\n');
    assert.equal(readKmodFacts(roots).moduleLive, false);
    fs.writeFileSync(path.join(roots.sys, 'module/skein_hbone/initstate'), 'live\n');
    fs.mkdirSync(path.join(roots.proc, 'net'), { recursive: true });
    fs.writeFileSync(path.join(roots.proc, 'net/tls_stat'), 'TlsCurrTxSw 0\n');
    assert.deepEqual(readKmodFacts(roots), { moduleLive: true, ktls: true });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
