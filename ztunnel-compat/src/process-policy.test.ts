// SPDX-License-Identifier: Apache-2.0
// An error nothing caught is logged and counted, and the process goes on
// serving (Node 24 would otherwise exit on an unhandled rejection).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import path from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { createLogger } from './log.ts';
import { installProcessPolicy } from './process-policy.ts';

test('each unhandled rejection and uncaught exception is logged with its scope and counted', async () => {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({ write(chunk: Buffer, _enc, cb) { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); cb(); } });
  const proc = new EventEmitter();
  const policy = installProcessPolicy(createLogger('info', 'json', sink), proc);
  const registry = new Registry();
  policy.attach(registry);
  proc.emit('unhandledRejection', new Error('stray rejection'));
  proc.emit('unhandledRejection', 'not even an Error');
  proc.emit('uncaughtException', new Error('stray throw'));
  assert.deepEqual(policy.counts(), { rejection: 2, exception: 1 });
  assert.deepEqual(lines.map((l) => [l.scope, l.kind, l.err, l.level]), [
    ['app', 'rejection', 'stray rejection', 'error'], ['app', 'rejection', 'not even an Error', 'error'], ['app', 'exception', 'stray throw', 'error'],
  ]);
  const text = await registry.metrics();
  assert.match(text, /skein_unhandled_errors_total\{kind="rejection"\} 2/);
  assert.match(text, /skein_unhandled_errors_total\{kind="exception"\} 1/);
  policy.uninstall();
  assert.equal(proc.listenerCount('unhandledRejection') + proc.listenerCount('uncaughtException'), 0);
});

test('in a real Node 24 process, a stray rejection and a stray throw leave it running; without the policy the rejection ends it', { timeout: 30_000 }, () => {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const script = (install: boolean): string => `
    import { createLogger } from ${JSON.stringify(path.join(here, 'log.ts'))};
    import { installProcessPolicy } from ${JSON.stringify(path.join(here, 'process-policy.ts'))};
    ${install ? 'installProcessPolicy(createLogger("info", "json"));' : ''}
    void Promise.reject(new Error('stray rejection'));
    setTimeout(() => { throw new Error('stray throw'); }, 10);
    setTimeout(() => { process.stdout.write('still serving\\n'); }, 100);`;
  const run = (install: boolean): ReturnType<typeof spawnSync> => spawnSync(process.execPath, ['--input-type=module', '-e', script(install)], { encoding: 'utf8', timeout: 20_000 });
  const guarded = run(true);
  assert.equal(guarded.status, 0, String(guarded.stderr));
  assert.equal(guarded.stdout, 'still serving\n');
  assert.match(String(guarded.stderr), /unhandled promise rejection; still serving/);
  assert.match(String(guarded.stderr), /uncaught exception; still serving/);
  const bare = run(false);
  assert.notEqual(bare.status, 0, 'Node 24 exits on an unhandled rejection');
  assert.equal(bare.stdout, '');
});
