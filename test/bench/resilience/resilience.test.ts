// SPDX-License-Identifier: Apache-2.0
// A short run of each part of `npm run bench -- resilience` on the real lab:
// the same code as the full run with small numbers, asserting the targets the
// issue sets (0 failed new connections through a rollout, fast-path flows
// survive it, HBONE streams end with a clean FIN; control-plane faults cost no
// connection and leave the state right; soak connections all open
// and the daemons back near their baseline afterwards; fuzzing finds nothing).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseBenchArgs, UsageError } from '../args.ts';
import { ebpfObject, kernelFastpath, root, skipUnless } from '../../skips.ts';
import { resilienceTable, runResilience } from './run.ts';

const why = skipUnless(root('lab namespaces, eBPF'), ebpfObject(), kernelFastpath('same-node'));
const log = (): void => undefined;

test('arguments: --parts and --soak-conns', () => {
  const a = parseBenchArgs(['resilience', '--parts', 'upgrade, soak', '--soak-conns', '500'], ['resilience']);
  assert.deepEqual([a.parts, a.soakConns], [['upgrade', 'soak'], 500]);
  for (const argv of [['resilience', '--soak-conns', '0'], ['resilience', '--soak-conns', '20001']]) {
    assert.throws(() => parseBenchArgs(argv, ['resilience']), UsageError, argv.join(' '));
  }
});

test('upgrade: both daemons replaced under load; no new connection fails, fast-path flows survive, HBONE streams end cleanly', { skip: why, timeout: 60_000 }, async () => {
  const r = await runResilience({ parts: ['upgrade'], soakConns: 0, soakHoldMs: 0, fuzzSeconds: 0, faultMs: 0, streams: 2, log });
  const u = r.upgrade;
  assert.ok(u !== undefined);
  assert.deepEqual(Object.keys(u.paths).sort(), ['fastpath', 'hbone', 'passthrough']);
  for (const [name, p] of Object.entries(u.paths)) {
    assert.ok(p.attempted > 50, `${name}: ${p.attempted} attempts`);
    assert.equal(p.failed, 0, `${name}: ${JSON.stringify(p.failures)}`);
  }
  // Each old daemon exits once its drain deadline has passed, not long after.
  for (const ms of Object.values(u.old_exit_ms)) assert.ok(ms < u.drain_ms + 2000, `exit ${ms} ms`);
  assert.deepEqual(u.targets_met, { no_failed_new_connections: true, fastpath_streams_survive: true, hbone_streams_end_cleanly: true });
  // HBONE streams through the client node's old daemon were ended by its drain, and replaced.
  assert.ok((u.paths.hbone?.streams.ended_clean ?? 0) >= 2);
  assert.match(resilienceTable(r), /targets: no_failed_new_connections met/);
});

test('faults: istiod killed, the CA refusing, a peer daemon killed, ZDS restarted with a pod gone, silent upstreams; traffic recovers and state is right', { skip: why, timeout: 150_000 }, async () => {
  const r = await runResilience({ parts: ['faults'], soakConns: 0, soakHoldMs: 0, fuzzSeconds: 0, faultMs: 3000, streams: 0, log });
  const [istiod, ca, killed, zds, silent] = r.faults ?? [];
  assert.ok(istiod !== undefined && ca !== undefined && killed !== undefined && zds !== undefined && silent !== undefined);
  // The control plane away: the certificates held stay valid through it, so
  // nothing fails, old connections go on, and afterwards each daemon holds
  // what istiod serves (changed during the outage) with renewed certificates.
  for (const x of [istiod, ca]) {
    for (const [k, p] of Object.entries(x.paths)) {
      assert.equal(p.failed, 0, `${x.fault}: ${k} ${JSON.stringify(p.failures)}`);
      assert.equal(p.streams?.survived, 2, `${x.fault}: ${k} streams ${JSON.stringify(p.streams)}`);
    }
    assert.ok(x.state_ms !== undefined && x.state_ms >= 0 && x.state_ms < 15_000, `${x.fault}: state right after ${x.state_ms} ms: ${JSON.stringify(x.problems)}`);
  }
  // The faults bit: renewals fell due during them and were refused (the test can fail).
  assert.ok((ca.counts?.refused_unavailable ?? 0) + (ca.counts?.refused_permission_denied ?? 0) > 0, JSON.stringify(ca.counts));
  // HBONE to the dead node fails while it is down (the test can fail), and comes back within seconds of the restart.
  assert.ok((killed.paths.hbone?.failed ?? 0) > 0, JSON.stringify(killed.paths));
  assert.ok(killed.recovered_ms < 5000, `recovered after ${killed.recovered_ms} ms`);
  for (const x of [istiod, ca, killed, zds, silent]) {
    for (const [k, v] of Object.entries(x.state)) assert.equal(v, true, `${x.fault}: ${k}`);
  }
  for (const [k, p] of Object.entries(zds.paths)) assert.equal(p.failed, 0, `zds restart: ${k}`);
  assert.equal(silent.paths.fastpath?.failed, 0);
});

test('soak: connections held through every path, then closed; fds and heap back near the baseline', { skip: why, timeout: 60_000 }, async () => {
  const r = await runResilience({ parts: ['soak'], soakConns: 300, soakHoldMs: 1000, fuzzSeconds: 0, faultMs: 0, streams: 0, log });
  const s = r.soak;
  assert.ok(s !== undefined);
  for (const name of ['hbone', 'fastpath', 'passthrough']) assert.deepEqual([s.paths[name]?.opened, s.paths[name]?.closed_early], [300, 0], name);
  // While held, the client node's daemon holds a socket per captured connection
  // (two for a plain TCP relay) and none for a fast-path one: the kernel has it.
  const held = (path: string): number => { const d = s.paths[path]?.daemons.node0; return d === undefined ? NaN : d.during.fds - d.before.fds; };
  // (The count is sampled while the load holds; a few sockets may be mid-close or not yet accepted then.)
  assert.ok(held('hbone') >= 285 && held('passthrough') >= 570 && held('fastpath') < 20, `${held('hbone')} ${held('passthrough')} ${held('fastpath')}`);
  // File descriptors are exact and must be back. The heap the closed
  // connections used goes at V8's next major collection, which an idle
  // daemon may not have run yet: it is bounded here, not required back.
  for (const [node, b] of Object.entries(s.baseline)) {
    const a = s.end[node];
    assert.ok(a !== undefined && a.fds - b.fds <= s.tolerance.fds, `${node} fds: ${JSON.stringify([b, a])}`);
    assert.ok(a.heap_mb - b.heap_mb <= 32, `${node} heap: ${JSON.stringify([b, a])}`);
  }
  assert.equal(s.log_errors, 0);
});

test('fuzz: a short coverage-guided run of one parser finds nothing', { timeout: 60_000 }, async () => {
  const r = await runResilience({ parts: ['fuzz'], soakConns: 0, soakHoldMs: 0, fuzzSeconds: 1, faultMs: 0, streams: 0, log, fuzzTargets: ['proxy-v2'] });
  assert.equal(r.fuzz?.findings, 0);
  assert.ok(r.fuzz.executions > 100);
});
