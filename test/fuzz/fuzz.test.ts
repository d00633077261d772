// SPDX-License-Identifier: Apache-2.0
// The fuzzer's own tests (that guidance works, that hangs are caught) and
// the short version of `npm run fuzz`: every target for a few seconds, no
// finding allowed, and every saved finding replayed.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { mutate, Rng } from './mutate.ts';
import { runTarget } from './run.ts';
import { findTarget, targetNames } from './targets/index.ts';

const fixture = (name: string): string => new URL(`./fixtures/${name}.ts`, import.meta.url).href;
const SHORT_SECONDS = 3;

test('mutation is deterministic for a seed and keeps to maxLen', () => {
  const ctx = { corpus: [Buffer.from('other entry')], dictionary: [Buffer.from('TOKEN')], maxLen: 16 };
  const run = (seed: number): string[] => {
    const rng = new Rng(seed);
    return Array.from({ length: 200 }, () => mutate(Buffer.from('hello world'), rng, ctx).toString('hex'));
  };
  assert.deepEqual(run(5), run(5));
  assert.notDeepEqual(run(5), run(6));
  assert.ok(run(7).every((hex) => hex.length / 2 <= 16));
  assert.ok(new Set(run(8)).size > 100, 'mutations vary');
});

test('coverage guidance reaches a bug behind four nested checks that blind mutation does not', { timeout: 120_000 }, async () => {
  // The guided run stops at the bug; blind, the same seed mutated 3000 times does not get there.
  const guided = await runTarget('planted', { module: fixture('planted'), seconds: 60, maxExecutions: 60_000, seed: 1, stopOnFinding: true });
  assert.deepEqual(guided.findings.map((f) => `${f.kind}: ${f.message}`), ['crash: TypeError: planted bug reached']);
  assert.ok(guided.newCoverage >= 4, `kept ${guided.newCoverage} inputs on the way`);
  const blind = await runTarget('planted', { module: fixture('planted'), seconds: 20, maxExecutions: 3000, seed: 1, guided: false });
  assert.equal(blind.findings.length, 0);
  assert.equal(blind.corpus, 1);
});

test('an execution that hangs is a finding with its input, and the worker is stopped', { timeout: 60_000 }, async () => {
  const t0 = performance.now();
  const s = await runTarget('hang', { module: fixture('hang'), seconds: 30, execTimeoutMs: 500, seed: 1 });
  assert.deepEqual(s.findings.map((f) => [f.kind, f.input.toString()]), [['hang', 'Hang']]);
  assert.ok(performance.now() - t0 < 20_000, 'reported well before the run would have ended');
});

for (const name of targetNames) {
  test(`fuzz ${name} for ${SHORT_SECONDS} s: no crash, no hang`, { timeout: 90_000 }, async () => {
    const s = await runTarget(name, { seconds: SHORT_SECONDS, seed: 1 });
    assert.deepEqual(s.findings.map((f) => `${f.kind}: ${f.message} (input ${f.input.toString('base64')})`), []);
    assert.ok(s.seeds > 0 && s.executions > s.seeds, `${s.executions} executions from ${s.seeds} seeds`);
    assert.ok(s.features > 0 && s.newCoverage > 0, `${s.features} features, ${s.newCoverage} new-coverage inputs`);
  });
}

test('every saved finding replays without a finding', async () => {
  const dir = new URL('./regressions/', import.meta.url);
  for (const name of fs.readdirSync(dir)) {
    const target = await findTarget(name);
    for (const file of fs.readdirSync(new URL(`${name}/`, dir))) {
      const input = fs.readFileSync(new URL(`${name}/${file}`, dir));
      try {
        await target.run(input);
      } catch (err) {
        assert.ok(target.declared.some((c) => err instanceof c), `${name}/${file}: ${(err as Error).stack}`);
      }
    }
  }
});
