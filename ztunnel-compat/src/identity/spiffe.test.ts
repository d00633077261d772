// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IdentityError, identityKey, parseSpiffe, sameIdentity, spiffeUri, type Identity } from './spiffe.ts';

test('an Istio SPIFFE URI parses into its three parts and prints back the same', () => {
  const uri = 'spiffe://cluster.local/ns/default/sa/bookinfo-productpage';
  const id = parseSpiffe(uri);
  assert.deepEqual(id, { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'bookinfo-productpage' });
  assert.equal(spiffeUri(id), uri);
  assert.equal(identityKey(id), uri);
});

test('anything but exactly spiffe://<td>/ns/<ns>/sa/<sa> with non-empty parts is SKEIN_BAD_SPIFFE', () => {
  const bad = [
    '',
    'cluster.local/ns/a/sa/b',
    'SPIFFE://cluster.local/ns/a/sa/b',
    'https://cluster.local/ns/a/sa/b',
    'spiffe://cluster.local',
    'spiffe://cluster.local/ns/a',
    'spiffe://cluster.local/ns/a/sa',
    'spiffe://cluster.local/ns/a/sa/b/extra',
    'spiffe://cluster.local/ns/a/sa/b/',
    'spiffe://cluster.local/namespace/a/sa/b',
    'spiffe://cluster.local/ns/a/serviceaccount/b',
    'spiffe://cluster.local/sa/b/ns/a',
    'spiffe://cluster.local/ns//sa/b',
    'spiffe://cluster.local/ns/a/sa/',
  ];
  for (const uri of bad) {
    assert.throws(() => parseSpiffe(uri), (err: unknown) => {
      assert.ok(err instanceof IdentityError, uri);
      assert.equal(err.code, 'SKEIN_BAD_SPIFFE');
      assert.match(err.message, /bad SPIFFE identity/);
      return true;
    }, uri);
  }
});

test('sameIdentity compares all three parts', () => {
  const a: Identity = { trustDomain: 'td', namespace: 'ns', serviceAccount: 'sa' };
  assert.ok(sameIdentity(a, a));
  assert.ok(sameIdentity(a, { ...a }));
  assert.ok(!sameIdentity(a, { ...a, trustDomain: 'other' }));
  assert.ok(!sameIdentity(a, { ...a, namespace: 'other' }));
  assert.ok(!sameIdentity(a, { ...a, serviceAccount: 'other' }));
});
