// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { policyKey, type Policy, type PolicyScope } from './policy.ts';
import { PolicyStore } from './policy-store.ts';

function pol(namespace: string, name: string, scope: PolicyScope): Policy {
  return { name, namespace, scope, action: 'Deny', dryRun: false, rules: [] };
}

function names(ps: readonly Policy[]): string[] {
  return ps.map(policyKey);
}

test('insert replaces, get and remove go by resource name, and size/values follow', () => {
  const s = new PolicyStore();
  const a = pol('app', 'a', 'Namespace');
  s.insert('app/a', a);
  assert.equal(s.get('app/a'), a);
  assert.equal(s.size, 1);
  const a2 = pol('app', 'a', 'Namespace');
  s.insert('app/a', a2);
  assert.equal(s.get('app/a'), a2);
  assert.equal(s.size, 1);
  s.insert('app/b', pol('app', 'b', 'WorkloadSelector'));
  assert.deepEqual(names([...s.values()]), ['app/a', 'app/b']);
  assert.equal(s.remove('app/a'), true);
  assert.equal(s.remove('app/a'), false);
  assert.equal(s.get('app/a'), undefined);
  assert.equal(s.size, 1);
});

test('generation moves on every change and only on changes', () => {
  const s = new PolicyStore();
  const g0 = s.generation;
  s.insert('app/a', pol('app', 'a', 'Namespace'));
  const g1 = s.generation;
  assert.ok(g1 > g0);
  s.insert('app/a', pol('app', 'a', 'Namespace'));
  const g2 = s.generation;
  assert.ok(g2 > g1);
  assert.equal(s.remove('app/missing'), false);
  assert.equal(s.generation, g2);
  s.remove('app/a');
  const g3 = s.generation;
  assert.ok(g3 > g2);
  s.clear();
  assert.equal(s.generation, g3, 'clearing an empty store changes nothing');
  s.insert('x/y', pol('x', 'y', 'Global'));
  s.clear();
  assert.ok(s.generation > g3 + 1);
  assert.equal(s.size, 0);
});

test('forWorkload: the namespace\'s Namespace policies, then all Global ones, then the selector keys', () => {
  const s = new PolicyStore();
  s.insert('app/ns-1', pol('app', 'ns-1', 'Namespace'));
  s.insert('other/ns-2', pol('other', 'ns-2', 'Namespace'));
  s.insert('istio-system/global', pol('istio-system', 'global', 'Global'));
  s.insert('app/sel', pol('app', 'sel', 'WorkloadSelector'));
  s.insert('app/sel-unused', pol('app', 'sel-unused', 'WorkloadSelector'));
  s.insert('app/ns-3', pol('app', 'ns-3', 'Namespace'));

  const r = s.forWorkload('app', ['app/sel', 'app/not-yet']);
  assert.deepEqual(names(r.policies), ['app/ns-1', 'app/ns-3', 'istio-system/global', 'app/sel']);
  assert.deepEqual(r.missing, ['app/not-yet']);

  assert.deepEqual(names(s.forWorkload('other', []).policies), ['other/ns-2', 'istio-system/global']);
  assert.deepEqual(names(s.forWorkload('empty', []).policies), ['istio-system/global']);
  assert.deepEqual(s.forWorkload('empty', []).missing, []);
});

test('a Global policy applies everywhere whatever namespace it carries (indexed under "")', () => {
  const s = new PolicyStore();
  s.insert('istio-system/g', pol('istio-system', 'g', 'Global'));
  s.insert('/local', pol('', 'local', 'Global'));
  for (const ns of ['', 'app', 'istio-system']) {
    assert.deepEqual(names(s.forWorkload(ns, []).policies), ['istio-system/g', '/local'], ns);
  }
});

test('a selector key naming a policy already included by scope is not listed twice', () => {
  const s = new PolicyStore();
  s.insert('app/ns', pol('app', 'ns', 'Namespace'));
  s.insert('other/ns', pol('other', 'ns', 'Namespace'));
  s.insert('istio-system/g', pol('istio-system', 'g', 'Global'));
  const r = s.forWorkload('app', ['app/ns', 'istio-system/g', 'other/ns']);
  assert.deepEqual(names(r.policies), ['app/ns', 'istio-system/g', 'other/ns']);
});

test('replacing a policy with another scope or namespace moves it between indexes', () => {
  const s = new PolicyStore();
  s.insert('app/p', pol('app', 'p', 'Namespace'));
  assert.deepEqual(names(s.forWorkload('app', []).policies), ['app/p']);
  s.insert('app/p', pol('app', 'p', 'WorkloadSelector'));
  assert.deepEqual(names(s.forWorkload('app', []).policies), []);
  assert.deepEqual(names(s.forWorkload('app', ['app/p']).policies), ['app/p']);
  s.insert('app/p', pol('app', 'p', 'Global'));
  assert.deepEqual(names(s.forWorkload('elsewhere', []).policies), ['app/p']);
  s.insert('app/p', pol('moved', 'p', 'Namespace'));
  assert.deepEqual(names(s.forWorkload('app', []).policies), []);
  assert.deepEqual(names(s.forWorkload('moved', []).policies), ['moved/p']);
  s.remove('app/p');
  assert.deepEqual(names(s.forWorkload('moved', []).policies), []);
  assert.deepEqual(names(s.forWorkload('elsewhere', []).policies), []);
});

test('forWorkload visits only the policies that apply, not the whole store', () => {
  // 100k Namespace policies spread over 10k namespaces: a lookup returns its
  // namespace's 10 and must not walk the rest. Timed against a scan of every
  // policy, which is orders of magnitude slower; the 20x margin cannot flake.
  const s = new PolicyStore();
  for (let i = 0; i < 100_000; i++) s.insert(`ns-${i % 10_000}/p-${i}`, pol(`ns-${i % 10_000}`, `p-${i}`, 'Namespace'));
  assert.equal(s.forWorkload('ns-7', []).policies.length, 10);
  const t0 = performance.now();
  for (let i = 0; i < 1000; i++) s.forWorkload(`ns-${i}`, []);
  const indexed = performance.now() - t0;
  const t1 = performance.now();
  for (let i = 0; i < 20; i++) {
    let n = 0;
    for (const p of s.values()) if (p.namespace === `ns-${i}`) n++;
    assert.equal(n, 10);
  }
  const scan20 = performance.now() - t1;
  assert.ok(indexed < scan20, `1000 indexed lookups took ${indexed.toFixed(1)} ms, 20 full scans ${scan20.toFixed(1)} ms`);
});
