// SPDX-License-Identifier: Apache-2.0
// The skip rule: what the machine cannot have skips; what it could have but
// lacks fails, unless SKEIN_TEST_ALLOW_SKIP=1. Checked on a child test run.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';

const SKIPS = pathToFileURL(new URL('./skips.ts', import.meta.url).pathname).href;

function run(impossible: boolean, allow: boolean): { status: number | null; out: string } {
  const code = `import { test } from 'node:test';
const { skipUnless } = await import(${JSON.stringify(SKIPS)});
const skip = skipUnless({ what: 'a widget', missing: 'none here', impossible: ${impossible} });
test('uses the widget', { skip }, () => {});`;
  // Not as a subtest of ours: without NODE_TEST_CONTEXT the child reports in plain TAP.
  const env: NodeJS.ProcessEnv = { ...process.env, SKEIN_TEST_ALLOW_SKIP: allow ? '1' : '' };
  delete env.NODE_TEST_CONTEXT;
  const r = spawnSync(process.execPath, ['--test-reporter=tap', '--input-type=module', '-e', code], { encoding: 'utf8', env, timeout: 30_000 });
  return { status: r.status, out: r.stdout + r.stderr };
}

test('a need the machine cannot have skips, saying why', () => {
  const r = run(true, false);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /# SKIP needs a widget: none here/);
});

test('a need the machine could have fails by default, naming it and the variable that allows a skip', () => {
  const r = run(false, false);
  assert.equal(r.status, 1, r.out);
  assert.match(r.out, /not ok 1 - this machine can run the tests below, so it must: a widget/);
  assert.match(r.out, /SKEIN_TEST_ALLOW_SKIP=1/);
  assert.match(r.out, /# SKIP needs a widget: none here \(a failure, reported above\)/);
});

test('SKEIN_TEST_ALLOW_SKIP=1 turns that failure into a skip', () => {
  const r = run(false, true);
  assert.equal(r.status, 0, r.out);
  assert.doesNotMatch(r.out, /not ok/);
  assert.match(r.out, /# SKIP needs a widget: none here/);
});
