// SPDX-License-Identifier: Apache-2.0
// The suite's own runner settings (package.json, test:run) report every test
// that ran: a file of many quick tests, run as the suite runs its files
// (process isolation, --test-force-exit, the report-flush preload), is
// counted whole every time. Without the preload Node loses the tail of such
// a file's results on most runs (nodejs/node#64833).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const PRELOAD = fileURLToPath(new URL('report-flush.ts', import.meta.url));
const TESTS = 400;

test('with the preload, --test-force-exit reports every test of a file, every time', { timeout: 60_000 }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skein-report-flush-'));
  try {
    const file = path.join(dir, 'many.mjs');
    fs.writeFileSync(file, `import { test } from 'node:test';\nfor (let i = 0; i < ${TESTS}; i++) test('case ' + i + ' ' + 'x'.repeat(200), () => {});\n`);
    // This process is itself a test child: the nested runner must not think it is one.
    const env = { ...process.env };
    delete env.NODE_TEST_CONTEXT;
    for (let run = 0; run < 5; run++) {
      const out = execFileSync(process.execPath, ['--import', PRELOAD, '--test', '--test-force-exit', '--test-reporter=tap', file], { env, encoding: 'utf8', timeout: 20_000 });
      assert.match(out, new RegExp(`^# pass ${TESTS}$`, 'm'), `run ${run}: ${/^# tests \d+$/m.exec(out)?.[0] ?? out.slice(-300)}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
