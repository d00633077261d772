// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { CrlError } from './crl.ts';
import type { CrlSet } from './crl.ts';
import { CrlFile } from './crl-file.ts';
import { silentLogger } from './log.ts';
import { chainOf, makePki } from './crl-testing.ts';
import type { Pki } from './crl-testing.ts';

let pki: Pki;
before(() => { pki = makePki(); });
after(() => { pki.close(); });

/** The next set the file loads, or undefined after `waitMs`. */
function nextLoad(file: CrlFile, waitMs = 3000): Promise<CrlSet | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => { off(); resolve(undefined); }, waitMs);
    const off = file.onChange((set) => { clearTimeout(timer); off(); resolve(set); });
  });
}

test('a CRL file that does not parse at start is an error naming CRL_PATH', () => {
  const p = path.join(pki.dir, 'bad.pem');
  writeFileSync(p, 'garbage');
  assert.throws(() => new CrlFile(p), (err: unknown) => err instanceof CrlError && err.message.includes(`CRL_PATH ${p}`));
});

test('missing at start revokes nothing until it appears; a ConfigMap-style symlink swap reloads; a bad or missing file keeps the last good set', async () => {
  const id = { trustDomain: 'cluster.local', namespace: 'ns', serviceAccount: 'henry' };
  const henry = pki.issue(id);
  const target = path.join(pki.dir, 'ca-crl.pem');
  const warned: string[] = [];
  const logger = { ...silentLogger, warn: (fields: Record<string, unknown>, msg: string) => { warned.push(`${msg}: ${String(fields.err)}`); } };
  const file = new CrlFile(target, { pollMs: 20, logger });
  /** Until the file's next failed reload is logged (3 s at most). */
  const refused = async (): Promise<string | undefined> => {
    const before = warned.length;
    for (let i = 0; i < 300 && warned.length === before; i++) await new Promise((r) => setTimeout(r, 10));
    return warned[before];
  };
  try {
    assert.equal(file.current.size, 0);
    pki.revoke('intermediate', henry.leafPem);
    // Kubernetes writes a new ..data directory and swaps the symlink to it.
    writeFileSync(path.join(pki.dir, 'v1.pem'), pki.crl('intermediate'));
    let loaded = nextLoad(file);
    symlinkSync(path.join(pki.dir, 'v1.pem'), target);
    assert.match((await loaded)?.check(chainOf(henry)) ?? '', /revoked/);
    assert.match(file.current.check(chainOf(henry)) ?? '', /revoked/);

    // An empty CRL (how an operator clears revocations) replaces it.
    writeFileSync(path.join(pki.dir, 'v2.pem'), '');
    loaded = nextLoad(file);
    symlinkSync(path.join(pki.dir, 'v2.pem'), `${target}.new`);
    renameSync(`${target}.new`, target);
    assert.equal((await loaded)?.size, 0);

    // Garbage, then no file at all: the last good set (empty here, then revoked again) stays.
    writeFileSync(path.join(pki.dir, 'v3.pem'), pki.crl('intermediate'));
    loaded = nextLoad(file);
    rmSync(target);
    symlinkSync(path.join(pki.dir, 'v3.pem'), target);
    assert.equal((await loaded)?.revoked, 1);
    let changed = false;
    file.onChange(() => { changed = true; });
    writeFileSync(path.join(pki.dir, 'v3.pem'), 'garbage, longer than before: '.repeat(100));
    assert.match(await refused() ?? '', /not reloaded.*does not parse/);
    rmSync(target);
    assert.match(await refused() ?? '', /not reloaded.*the file is gone/);
    // What the guard (the native engine) refuses is refused for both.
    file.guard(() => { throw new Error('the engine said no'); });
    writeFileSync(path.join(pki.dir, 'v4.pem'), '');
    symlinkSync(path.join(pki.dir, 'v4.pem'), target);
    assert.match(await refused() ?? '', /not reloaded.*the engine said no/);
    assert.equal(changed, false, 'no new set was taken');
    assert.match(file.current.check(chainOf(henry)) ?? '', /revoked/, 'the last good set is in force');
  } finally {
    file.close();
  }
});
