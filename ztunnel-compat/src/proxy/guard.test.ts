// SPDX-License-Identifier: Apache-2.0
// The per-connection guard: a task's synchronous throw or rejection closes
// that connection's sockets, is logged as ztunnel logs an early deny
// (`connection failed` with the error) and counted; nothing escapes it.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { createLogger, scoped } from '../log.ts';
import { checkFault, ConnectionGuard, injectFault } from './guard.ts';

function setup(): { guard: ConnectionGuard; registry: Registry; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({ write(chunk: Buffer, _enc, cb) { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); cb(); } });
  const log = createLogger('info', 'json', sink);
  const registry = new Registry();
  return { guard: new ConnectionGuard({ registry, log: scoped(log, 'proxy'), access: scoped(log, 'access') }), registry, lines };
}

const closable = (): { destroyed: boolean; destroy(): void } => ({ destroyed: false, destroy() { this.destroyed = true; } });

test('a synchronous throw and a later rejection each close their connection, log `connection failed` and count', async () => {
  const { guard, registry, lines } = setup();
  const a = closable();
  const b = closable();
  let late: ReturnType<typeof closable> | undefined;
  guard.run('outbound', () => ({ 'src.addr': '10.0.0.1:1234', direction: 'outbound' }), () => [a], () => { throw new Error('boom'); });
  assert.ok(a.destroyed);
  guard.run('inbound', () => ({ 'src.addr': '10.0.0.2:99', direction: 'inbound' }), () => [b, late], async () => {
    late = closable(); // made during the task: still closed
    await new Promise((r) => setImmediate(r));
    throw new TypeError('later');
  });
  await new Promise((r) => setTimeout(r, 20));
  assert.ok(b.destroyed);
  assert.ok(late?.destroyed);
  const failed = lines.filter((l) => l.message === 'connection failed');
  assert.deepEqual(failed.map((l) => [l.scope, l.level, l.stage, l.error, l['src.addr']]), [
    ['access', 'warn', 'outbound', 'internal error: boom', '10.0.0.1:1234'],
    ['access', 'warn', 'inbound', 'internal error: later', '10.0.0.2:99'],
  ]);
  const text = await registry.metrics();
  assert.match(text, /skein_connection_task_failures_total\{stage="outbound"\} 1/);
  assert.match(text, /skein_connection_task_failures_total\{stage="inbound"\} 1/);
});

test('a task that succeeds closes nothing and counts nothing; broken field builders and closers do not escape', async () => {
  const { guard, registry, lines } = setup();
  const a = closable();
  guard.run('hbone', () => ({ direction: 'inbound' }), () => [a], async () => { await Promise.resolve(); });
  await new Promise((r) => setImmediate(r));
  assert.equal(a.destroyed, false);
  assert.doesNotMatch(await registry.metrics(), /skein_connection_task_failures_total\{/);
  // Everything the guard calls may itself be broken.
  guard.run('hbone', () => { throw new Error('no fields'); }, () => [{ destroy() { throw new Error('no close'); } }], () => { throw new Error('first'); });
  assert.equal(lines.at(-1)?.message, 'connection failed (and its access-log fields could not be built)');
  guard.count('hbone', new Error('counted only'));
  assert.match(await registry.metrics(), /skein_connection_task_failures_total\{stage="hbone"\} 2/);
});

test('the test-only fault hook runs where a task checks it, until removed', () => {
  assert.equal(checkFault('outbound'), undefined, 'no hook: nothing to await');
  const seen: string[] = [];
  const remove = injectFault((stage) => { seen.push(stage); throw new Error(`injected in ${stage}`); });
  assert.throws(() => checkFault('inbound'), /injected in inbound/);
  remove();
  assert.equal(checkFault('inbound'), undefined);
  assert.deepEqual(seen, ['inbound']);
});
