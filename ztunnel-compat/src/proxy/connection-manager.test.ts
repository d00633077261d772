// SPDX-License-Identifier: Apache-2.0
// Established inbound connections are re-authorized when policy changes: the
// ones a new DENY (or a removed ALLOW) no longer allows are closed, the rest
// stay.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseSpiffe } from '../identity/spiffe.ts';
import { ProxyState } from '../state/store.ts';
import { ProxyStateUpdater } from '../state/updater.ts';
import { pod, policyResource, workloadResource } from '../state/testing.ts';
import { ConnectionManager } from './connection-manager.ts';

function setup(): { state: ProxyState; updater: ProxyStateUpdater; conns: ConnectionManager; closed: string[] } {
  const state = new ProxyState();
  const updater = new ProxyStateUpdater(state);
  updater.addressHandler.handle([workloadResource(pod('server', 'default', '10.0.0.2'))], []);
  const conns = new ConnectionManager(state);
  return { state, updater, conns, closed: [] };
}

const from = (sa: string, ip: string): { source: ReturnType<typeof parseSpiffe>; sourceIp: string; destinationIp: string; destinationPort: number } => ({
  source: parseSpiffe(`spiffe://cluster.local/ns/default/sa/${sa}`), sourceIp: ip, destinationIp: '10.0.0.2', destinationPort: 8080,
});

test('a new DENY closes exactly the connections it matches', () => {
  const { state, updater, conns, closed } = setup();
  const uid = state.workloads.byAddress('', '10.0.0.2')?.uid ?? '';
  for (const [sa, ip] of [['sleep', '10.0.0.5'], ['curl', '10.0.0.6']] as const) {
    conns.register({ destinationUid: uid, request: from(sa, ip), close: (reason) => { closed.push(`${sa}: ${reason}`); } });
  }
  assert.equal(conns.recheck(), 0, 'no policy: everything stays');
  updater.authorizationHandler.handle([policyResource({ name: 'deny-sleep', namespace: 'default', scope: 1, action: 1, rules: [{ clauses: [{ matches: [{ principals: [{ exact: 'cluster.local/ns/default/sa/sleep' }] }] }] }] })], []);
  assert.equal(conns.recheck(), 1);
  assert.deepEqual(closed, ['sleep: explicitly denied by: default/deny-sleep']);
  assert.equal(conns.size, 1);
});

test('removing the only ALLOW that admitted a connection does not close it (no ALLOW policies: allow); narrowing it does', () => {
  const { state, updater, conns, closed } = setup();
  const uid = state.workloads.byAddress('', '10.0.0.2')?.uid ?? '';
  const allow = (principal: string): ReturnType<typeof policyResource> => policyResource({ name: 'allow', namespace: 'default', scope: 1, action: 0, rules: [{ clauses: [{ matches: [{ principals: [{ exact: principal }] }] }] }] });
  updater.authorizationHandler.handle([allow('cluster.local/ns/default/sa/sleep')], []);
  conns.register({ destinationUid: uid, request: from('sleep', '10.0.0.5'), close: (r) => { closed.push(r); } });
  assert.equal(conns.recheck(), 0);
  updater.authorizationHandler.handle([allow('cluster.local/ns/default/sa/other')], []);
  assert.equal(conns.recheck(), 1);
  assert.deepEqual(closed, ['allow policies exist, but none allowed']);
});

test('a connection whose destination workload disappeared is closed', () => {
  const { state, updater, conns, closed } = setup();
  const uid = state.workloads.byAddress('', '10.0.0.2')?.uid ?? '';
  const untrack = conns.register({ destinationUid: uid, request: from('sleep', '10.0.0.5'), close: (r) => { closed.push(r); } });
  updater.addressHandler.handle([], [uid]);
  assert.equal(conns.recheck(), 1);
  assert.deepEqual(closed, ['destination workload removed']);
  untrack();
  assert.equal(conns.size, 0);
});

test('admit registers before it authorizes: an allowed connection is tracked until released, so a DENY during its upstream connect closes it', () => {
  const { state, updater, conns, closed } = setup();
  const uid = state.workloads.byAddress('', '10.0.0.2')?.uid ?? '';
  const a = conns.admit({ destinationUid: uid, request: from('sleep', '10.0.0.5'), close: (r) => { closed.push(r); } });
  assert.ok(a.allowed);
  assert.equal(conns.size, 1, 'tracked from admission, before any upstream exists');
  // The policy arrives while the connection is still connecting to its app.
  updater.authorizationHandler.handle([policyResource({ name: 'deny-sleep', namespace: 'default', scope: 1, action: 1, rules: [{ clauses: [{ matches: [{ principals: [{ exact: 'cluster.local/ns/default/sa/sleep' }] }] }] }] })], []);
  assert.equal(conns.recheck(), 1);
  assert.deepEqual(closed, ['explicitly denied by: default/deny-sleep']);
  a.release();
  assert.equal(conns.size, 0);
});

test('admit refuses what the current policies deny and keeps nothing', () => {
  const { state, updater, conns, closed } = setup();
  const uid = state.workloads.byAddress('', '10.0.0.2')?.uid ?? '';
  updater.authorizationHandler.handle([policyResource({ name: 'deny-sleep', namespace: 'default', scope: 1, action: 1, rules: [{ clauses: [{ matches: [{ principals: [{ exact: 'cluster.local/ns/default/sa/sleep' }] }] }] }] })], []);
  const a = conns.admit({ destinationUid: uid, request: from('sleep', '10.0.0.5'), close: (r) => { closed.push(r); } });
  assert.deepEqual(a, { allowed: false, reason: 'explicitly denied by: default/deny-sleep' });
  assert.equal(conns.size, 0);
  const gone = conns.admit({ destinationUid: 'no-such-uid', request: from('curl', '10.0.0.6'), close: (r) => { closed.push(r); } });
  assert.deepEqual(gone, { allowed: false, reason: 'destination workload removed' });
  assert.deepEqual(closed, []);
});
