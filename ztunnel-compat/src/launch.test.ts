// SPDX-License-Identifier: Apache-2.0
// bin/skein's Node flags and compile cache, and their TypeScript twin that
// the benchmark starts daemons with.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { daemonEnv, DEFAULT_NODE_FLAGS, nodeFlags } from './launch.ts';

const bin = fileURLToPath(new URL('../bin/skein', import.meta.url));
const root = fileURLToPath(new URL('../..', import.meta.url));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'skein-launch-'));
after(() => { fs.rmSync(tmp, { recursive: true, force: true }); });

test('bin/skein and launch.ts have the same default flags, and this Node knows each', () => {
  const m = /^flags=\$\{SKEIN_NODE_FLAGS-"([^"]*)"\}$/m.exec(fs.readFileSync(bin, 'utf8'));
  assert.ok(m !== null, 'the default flags line of bin/skein');
  assert.deepEqual(m[1]?.split(' '), DEFAULT_NODE_FLAGS);
  const r = spawnSync(process.execPath, [...DEFAULT_NODE_FLAGS, '-e', '0'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
});

test('SKEIN_NODE_FLAGS replaces the defaults, also when empty; the daemon\'s environment loses it and gains a compile cache', () => {
  assert.deepEqual(nodeFlags({}), DEFAULT_NODE_FLAGS);
  assert.deepEqual(nodeFlags({ SKEIN_NODE_FLAGS: '' }), []);
  assert.deepEqual(nodeFlags({ SKEIN_NODE_FLAGS: ' --max-old-space-size=256\t--v8-pool-size=2 ' }), ['--max-old-space-size=256', '--v8-pool-size=2']);
  assert.deepEqual(daemonEnv({ A: '1', SKEIN_NODE_FLAGS: '' }, '/r'), { A: '1', NODE_COMPILE_CACHE: '/r/.skein/compile-cache' });
  assert.deepEqual(daemonEnv({ NODE_COMPILE_CACHE: '/c' }, '/r'), { NODE_COMPILE_CACHE: '/c' });
});

/** Runs `skein version` with a preloaded probe that reports what the daemon's Node got. */
function probe(env: Record<string, string>): { execArgv: string[]; flagsVar: string | null; cache: string | null } {
  const file = path.join(tmp, 'probe.mjs');
  fs.writeFileSync(file, 'process.stderr.write(JSON.stringify({ execArgv: process.execArgv, flagsVar: process.env.SKEIN_NODE_FLAGS ?? null, cache: process.env.NODE_COMPILE_CACHE ?? null }) + "\\n");\n');
  const base: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  const r = spawnSync(bin, ['version'], { encoding: 'utf8', env: { ...base, ...env, SKEIN_NODE_FLAGS: `${env.SKEIN_NODE_FLAGS ?? DEFAULT_NODE_FLAGS.join(' ')} --import=${file}` }, timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^skein /);
  return JSON.parse(r.stderr.trim().split('\n').at(-1) ?? '') as ReturnType<typeof probe>;
}

test('bin/skein hands SKEIN_NODE_FLAGS to Node, not to the daemon, and keeps the compile cache in .skein unless told otherwise', () => {
  const own = probe({ SKEIN_NODE_FLAGS: '--max-semi-space-size=4' });
  assert.deepEqual(own.execArgv.slice(0, 1), ['--max-semi-space-size=4']);
  assert.equal(own.flagsVar, null, 'not passed on');
  assert.equal(own.cache, path.join(root, '.skein/compile-cache'));
  const cache = path.join(tmp, 'cache');
  const chosen = probe({ NODE_COMPILE_CACHE: cache });
  assert.deepEqual(chosen.execArgv.slice(0, DEFAULT_NODE_FLAGS.length), DEFAULT_NODE_FLAGS);
  assert.equal(chosen.cache, cache);
  // Node wrote it: a directory per Node version and uid, an entry per module.
  assert.ok(fs.readdirSync(cache).some((d) => fs.readdirSync(path.join(cache, d)).length > 100));
});
