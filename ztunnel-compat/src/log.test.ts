// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { parseConfig } from './config.ts';
import { changeLevels, createLogger, describeLevels, scoped, SCOPES } from './log.ts';
import { capturesInSources } from './source-testing.ts';

async function written(format: 'plain' | 'json', write: (log: ReturnType<typeof createLogger>) => void): Promise<string[]> {
  const out = new PassThrough();
  let text = '';
  out.on('data', (d: Buffer) => { text += d.toString(); });
  write(createLogger('info', format, out));
  await new Promise((r) => setImmediate(r));
  return text.split('\n').filter((l) => l !== '');
}

// ztunnel's plain format (src/telemetry.rs IstioFormat::format_event): time,
// level, target and message separated by tabs, then k=v fields separated by
// spaces, strings as Debug (quoted), addresses as Display, numbers bare.
test('LOG_FORMAT=plain writes ztunnel-style text lines, not JSON', async () => {
  const [line, bare, ...rest] = await written('plain', (log) => {
    scoped(log, 'access').error({ 'src.addr': '10.0.0.1:4000', direction: 'inbound', bytes_sent: 0, error: 'connection closed due to policy rejection: x' }, 'connection complete');
    scoped(log, 'app').info({}, 'skein started');
  });
  assert.deepEqual(rest, []);
  const parts = (line ?? '').split('\t');
  assert.equal(parts.length, 5, line);
  assert.match(parts[0] ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
  assert.deepEqual(parts.slice(1), ['error', 'access', 'connection complete', 'src.addr=10.0.0.1:4000 direction="inbound" bytes_sent=0 error="connection closed due to policy rejection: x"']);
  assert.deepEqual((bare ?? '').split('\t').slice(1), ['info', 'app', 'skein started'], 'no trailing tab without fields');
  assert.throws(() => JSON.parse(line ?? ''));
});

test('LOG_FORMAT=json writes one JSON object per line with level, time, scope and message', async () => {
  const [line] = await written('json', (log) => { scoped(log, 'xds').warn({ nonce: 'n' }, 'rejected'); });
  const o = JSON.parse(line ?? '') as Record<string, unknown>;
  assert.deepEqual([o.level, o.scope, o.message, o.nonce, typeof o.time], ['warn', 'xds', 'rejected', 'n', 'string']);
});

test('RUST_LOG targets set their scope\'s level: access=off silences access logs, ztunnel::proxy=debug opens proxy\'s debug; off silences all', async () => {
  const config = parseConfig({ RUST_LOG: 'info,access=off,ztunnel::proxy::inbound=debug,hickory_server=off' });
  assert.equal(config.logLevel, 'info');
  assert.deepEqual(config.logTargets, { access: 'off', proxy: 'debug', hickory_server: 'off' });
  // ztunnel's modules by Skein's scopes; a bare target is every level of it; a span filter's '=' is not the level's.
  assert.deepEqual(parseConfig({ RUST_LOG: 'warn,ztunnel::identity::caclient=debug,ztunnel::tls::crl=error,ztunnel::inpod,ztunnel=info,x[{a=b}]=debug' }).logTargets,
    { ca: 'debug', crl: 'error', inpod: 'trace', ztunnel: 'info', x: 'debug' });
  assert.deepEqual(parseConfig({ RUST_LOG: 'y[{a=b}]' }).logTargets, { y: 'trace' }, 'a span filter without a level');
  const out = new PassThrough();
  let text = '';
  out.on('data', (d: Buffer) => { text += d.toString(); });
  const log = createLogger(config.logLevel, 'json', out, config.logTargets);
  scoped(log, 'access').info({}, 'connection complete');
  scoped(log, 'proxy').debug({}, 'proxy detail');
  scoped(log, 'xds').debug({}, 'xds detail');
  scoped(log, 'xds').info({}, 'xds news');
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(text.split('\n').filter((l) => l !== '').map((l) => (JSON.parse(l) as { message: string }).message), ['proxy detail', 'xds news']);

  const silent = new PassThrough();
  let none = '';
  silent.on('data', (d: Buffer) => { none += d.toString(); });
  const off = createLogger(parseConfig({ RUST_LOG: 'off' }).logLevel, 'json', silent);
  scoped(off, 'app').error({}, 'nothing');
  await new Promise((r) => setImmediate(r));
  assert.equal(none, '');
  assert.throws(() => parseConfig({ RUST_LOG: 'info,access=loud' }), /access=loud/);
});

test('levels change as ztunnel\'s set_level: a scope keeps its own level under a new default; reset returns to RUST_LOG\'s; ztunnel=… covers every scope but access', async () => {
  const out = new PassThrough();
  let text = '';
  out.on('data', (d: Buffer) => { text += d.toString(); });
  const log = createLogger('info', 'json', out, { access: 'off' });
  const emitted = async (): Promise<string[]> => {
    text = '';
    scoped(log, 'access').info({}, 'access');
    scoped(log, 'proxy').debug({}, 'proxy debug');
    log.debug({ scope: 'xds' }, 'xds debug via the root');
    await new Promise((r) => setImmediate(r));
    return text.split('\n').filter((l) => l !== '').map((l) => (JSON.parse(l) as { message: string }).message);
  };
  assert.deepEqual(await emitted(), []);
  changeLevels(log, { global: 'debug', scopes: new Map(), reset: false });
  assert.deepEqual(await emitted(), ['proxy debug', 'xds debug via the root'], 'access stays off under a new default');
  assert.equal(describeLevels(log), 'debug (access:off)');
  changeLevels(log, { scopes: new Map([['ztunnel', 'warn']]), reset: false });
  assert.deepEqual(await emitted(), [], 'ztunnel=warn quiets every scope of the crate; access is its own');
  changeLevels(log, { scopes: new Map([['access', 'info']]), reset: false });
  assert.deepEqual(await emitted(), ['access']);
  changeLevels(log, { scopes: new Map(), reset: true });
  assert.equal(describeLevels(log), 'info (access:off)');
  assert.deepEqual(await emitted(), []);
});

test('SCOPES names every scope the daemon logs under, so /logging and RUST_LOG can reach each', () => {
  const used = capturesInSources(/scoped\([\w.#]+, '([a-z_-]+)'\)|\{ scope: '([a-z_-]+)'/g);
  // 'inbound' only refines what a line on the proxy logger shows (ztunnel::proxy::inbound is proxy).
  used.delete('inbound');
  assert.ok(used.size >= 8, [...used].join(','));
  assert.deepEqual([...used].filter((s) => !SCOPES.includes(s)), []);
});

test('a scoped logger runs at its scope\'s level exactly (isLevelEnabled spares work); a refining scope field does not escape it', async () => {
  const out = new PassThrough();
  let text = '';
  out.on('data', (d: Buffer) => { text += d.toString(); });
  const log = createLogger('info', 'json', out, { access: 'off', proxy: 'error', hickory_server: 'debug' });
  assert.equal(scoped(log, 'access').isLevelEnabled('info'), false);
  assert.equal(scoped(log, 'xds').isLevelEnabled('debug'), false, 'a target Skein has no scope for lowers nothing');
  scoped(log, 'proxy').warn({ scope: 'inbound' }, 'refined');
  await new Promise((r) => setImmediate(r));
  assert.equal(text, '');
  changeLevels(log, { scopes: new Map([['proxy', 'warn']]), reset: false });
  scoped(log, 'proxy').warn({ scope: 'inbound' }, 'refined');
  await new Promise((r) => setImmediate(r));
  assert.equal((JSON.parse(text) as { scope: string }).scope, 'inbound');
});
