// SPDX-License-Identifier: Apache-2.0
// `skein waypoint generate` output, byte for byte, against the files in
// golden/. To refresh them after an intended change:
//   UPDATE_GOLDEN=1 test/node --test waypoint/test/golden.test.ts
// and review the diff before committing.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { parseWaypointArgs } from '../src/cli/args.ts';
import { runWaypoint } from '../src/cli/run.ts';

const goldenCases = [
  { file: 'stock-for-service.yaml', args: ['--name', 'waypoint', '--namespace', 'demo'] },
  { file: 'stock-for-all-enroll.yaml', args: ['--name', 'wp-all', '--namespace', 'shop', '--for', 'all', '--enroll-namespace'] },
  { file: 'sandwich.yaml', args: ['--name', 'envoy-wp', '--namespace', 'shop', '--sandwich', '--revision', 'canary'] },
] as const;

function goldenPath(file: string): URL {
  return new URL(`golden/${file}`, import.meta.url);
}

for (const c of goldenCases) {
  test(`generate ${c.args.join(' ')} matches golden/${c.file}`, async () => {
    let out = '';
    const code = await runWaypoint(parseWaypointArgs(['generate', ...c.args]), {
      out: (s) => { out += s; },
      err: (s) => { assert.fail(`unexpected stderr: ${s}`); },
      cluster: () => assert.fail('generate must not reach a cluster'),
    });
    assert.equal(code, 0);
    if (process.env.UPDATE_GOLDEN === '1') writeFileSync(goldenPath(c.file), out);
    assert.equal(out, readFileSync(goldenPath(c.file), 'utf8'));
  });
}
