// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { parseArgs, UsageError } from './cli.ts';

const bin = fileURLToPath(new URL('../bin/skein', import.meta.url));
const root = fileURLToPath(new URL('../..', import.meta.url));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'skein-cli-'));
after(() => { fs.rmSync(tmp, { recursive: true, force: true }); });

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

test('the installed command starts: npm\'s node_modules/.bin/skein, npx skein, and a link of its own on PATH', { timeout: 60_000 }, () => {
  const version = (file: string, args: string[] = [], cwd = root): Record<string, string> => {
    const r = spawnSync(file, [...args, 'version', '--json'], { cwd, encoding: 'utf8', timeout: 50_000 });
    assert.equal(r.status, 0, `${file} ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as Record<string, string>;
  };
  // npm links the workspace's bin here (a link to a link: @skein/ztunnel-compat is one too).
  const dotBin = path.join(root, 'node_modules', '.bin', 'skein');
  assert.ok(fs.lstatSync(dotBin).isSymbolicLink(), `${dotBin} is npm's link`);
  assert.match(version(dotBin).node ?? '', /^24\./);
  // npx finds the same link, from another directory of the project too.
  assert.match(version('npx', ['--no-install', 'skein'], path.join(root, 'docs')).node ?? '', /^24\./);
  // A link from anywhere, and the same for test/node.
  fs.symlinkSync(dotBin, path.join(tmp, 'skein'));
  assert.match(version(path.join(tmp, 'skein')).node ?? '', /^24\./);
  fs.symlinkSync(path.join(root, 'test', 'node'), path.join(tmp, 'node24'));
  assert.match(execFileSync(path.join(tmp, 'node24'), ['-p', 'process.version'], { cwd: tmp, encoding: 'utf8' }), /^v24\./);
});
