// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { parseArgs, UsageError } from './cli.ts';

const bin = fileURLToPath(new URL('../bin/skein', import.meta.url));

test('parseArgs knows help and version and refuses the rest', () => {
  assert.deepEqual(parseArgs([]), { kind: 'help' });
  assert.deepEqual(parseArgs(['--help']), { kind: 'help' });
  assert.deepEqual(parseArgs(['version']), { kind: 'version', json: false });
  assert.deepEqual(parseArgs(['version', '--json']), { kind: 'version', json: true });
  assert.throws(() => parseArgs(['frobnicate']), (e: Error) => e instanceof UsageError && /unknown command 'frobnicate'/.test(e.message));
  assert.throws(() => parseArgs(['version', '--yaml']), /version: unexpected argument '--yaml'/);
  // ztunnel's chart runs `proxy ztunnel`; extra words are ignored, --cleanup is not.
  assert.deepEqual(parseArgs(['proxy', 'ztunnel']), { kind: 'proxy', cleanup: false });
  assert.deepEqual(parseArgs(['proxy', '--cleanup']), { kind: 'proxy', cleanup: true });
});

test('parseArgs hands `waypoint` to the waypoint parser and turns its refusals into usage errors', () => {
  assert.deepEqual(parseArgs(['waypoint', 'status', '--name', 'wp']), { kind: 'waypoint', action: 'status', name: 'wp', namespace: undefined });
  assert.throws(() => parseArgs(['waypoint', 'apply', '--frob']),
    (e: Error) => e instanceof UsageError && /^waypoint apply: unknown flag '--frob'\n\nUsage: skein waypoint/.test(e.message));
});

test('the skein binary runs on Node 24 with the addon loaded', () => {
  const out = JSON.parse(execFileSync(bin, ['version', '--json'], { encoding: 'utf8' })) as Record<string, string>;
  assert.match(out.node ?? '', /^24\./);
  assert.match(out.libbpf ?? '', /^1\.\d+$/);
  const bad = spawnSync(bin, ['nope'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /^skein: unknown command 'nope'/);
});
