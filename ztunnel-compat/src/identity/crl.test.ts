// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { X509Certificate } from 'node:crypto';
import { anchoredChain, CrlError, CrlSet } from './crl.ts';
import { chainOf, makePki } from './crl-testing.ts';
import type { Pki } from './crl-testing.ts';

const id = (sa: string) => ({ trustDomain: 'cluster.local', namespace: 'ns', serviceAccount: sa });
let pki: Pki;
let otherPki: Pki;

before(() => {
  pki = makePki();
  otherPki = makePki();
});
after(() => {
  pki.close();
  otherPki.close();
});

test('empty files revoke nothing; garbage, or a block without its END, is an error naming the block', () => {
  assert.equal(CrlSet.parse(Buffer.alloc(0)).size, 0);
  assert.equal(CrlSet.parse(Buffer.from('\n  \n')).size, 0);
  assert.throws(() => CrlSet.parse(Buffer.from('-----BEGIN NOTHING-----\n-----END SOMETHING-----\n')), (err: unknown) => err instanceof CrlError && /no END line/.test(err.message));
  assert.throws(() => CrlSet.parse(Buffer.from('not a CRL')), (err: unknown) => err instanceof CrlError && /CRL 1 of 1 does not parse/.test(err.message));
  const good = pki.crl('intermediate').toString();
  assert.throws(() => CrlSet.parse(Buffer.from(`${good}-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n`)),
    (err: unknown) => err instanceof CrlError && /CRL 2 of 2/.test(err.message));
});

test('a revoked leaf is refused and its siblings are not; PEM and DER read alike', () => {
  const alice = pki.issue(id('alice'));
  const bob = pki.issue(id('bob'));
  assert.equal(CrlSet.parse(pki.crl('intermediate')).check(chainOf(alice)), undefined, 'nothing revoked yet');
  pki.revoke('intermediate', alice.leafPem);
  const pem = pki.crl('intermediate');
  const set = CrlSet.parse(pem);
  assert.equal(set.size, 1);
  assert.equal(set.revoked, 1);
  assert.match(set.check(chainOf(alice)) ?? '', /the peer\) is revoked by the CRL of .*Plugged Intermediate CA/);
  assert.equal(set.check(chainOf(bob)), undefined);
  // Without the anchor (a peer that sent no root) the leaf's CRL still applies.
  assert.match(set.check(chainOf(alice).slice(0, 2)) ?? '', /revoked/);
  const der = Buffer.from(pem.toString().replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  assert.match(CrlSet.parse(der).check(chainOf(alice)) ?? '', /revoked/);
});

test('a revoked intermediate (in the root CRL, concatenated with the intermediate one) refuses every leaf under it', () => {
  const p = makePki();
  try {
    const carol = p.issue(id('carol'));
    const before = CrlSet.parse(Buffer.concat([p.crl('intermediate'), p.crl('root')]));
    assert.equal(before.size, 2);
    assert.equal(before.check(chainOf(carol)), undefined);
    p.revoke('root', 'intermediate');
    const set = CrlSet.parse(Buffer.concat([p.crl('intermediate'), p.crl('root')]));
    assert.match(set.check(chainOf(carol)) ?? '', /\(CA .*Plugged Intermediate CA\) is revoked by the CRL of .*Plugged Root CA/);
  } finally {
    p.close();
  }
});

test('a CRL that does not verify under the issuer that names it fails the chain; other issuers are unknown, so allowed', () => {
  const dave = pki.issue(id('dave'));
  // Another PKI with the same names: its intermediate CRL names our issuer but is signed by another key.
  otherPki.revoke('intermediate', otherPki.issue(id('x')).leafPem);
  const forged = CrlSet.parse(otherPki.crl('intermediate'));
  assert.match(forged.check(chainOf(dave)) ?? '', /does not verify under its issuer's key/);
  // A CA of other names: its CRL (revoking a leaf of its own) says nothing of ours.
  const stranger = makePki(' 2');
  try {
    stranger.revoke('intermediate', stranger.issue(id('y')).leafPem);
    assert.equal(CrlSet.parse(stranger.crl('intermediate')).check(chainOf(dave)), undefined);
  } finally {
    stranger.close();
  }
});

test('an empty set checks nothing', () => {
  assert.equal(CrlSet.EMPTY.check(chainOf(pki.issue(id('frank')))), undefined);
});

test('a peer chain is rebuilt from links that verify up to one of our roots: a leaf alone completes from what we hold; other keys under the same names do not', () => {
  const grace = pki.issue(id('grace'));
  const [leaf, intermediate, root] = chainOf(grace) as [Buffer, Buffer, Buffer];
  assert.deepEqual(anchoredChain(leaf, [intermediate], [root]), [leaf, intermediate, root]);
  assert.deepEqual(anchoredChain(leaf, [root, intermediate], [root]), [leaf, intermediate, root]);
  const [, otherIntermediate, otherRoot] = chainOf(otherPki.issue(id('x'))) as [Buffer, Buffer, Buffer];
  assert.equal(anchoredChain(leaf, [otherIntermediate], [root]), undefined, 'same names, other key: not its issuer');
  assert.equal(anchoredChain(leaf, [intermediate], [otherRoot]), undefined, 'not to a root we trust');
  assert.equal(anchoredChain(leaf, [], [root]), undefined, 'its issuer missing');
});

test('a decoy (the revoked intermediate\'s name and key, signed by a CA we do not trust) sent ahead of the real one cannot hide the revocation', () => {
  const p = makePki(' decoy');
  const evil = makePki(' evil');
  try {
    const henry = p.issue(id('henry'));
    const [leaf, intermediate, root] = chainOf(henry) as [Buffer, Buffer, Buffer];
    const decoy = new X509Certificate(evil.decoy(p)).raw;
    p.revoke('root', 'intermediate');
    const crls = CrlSet.parse(Buffer.concat([p.crl('intermediate'), p.crl('root')]));
    // The decoy issues the leaf as far as name and signature go, but leads to no root of ours.
    assert.equal(anchoredChain(leaf, [decoy], [root]), undefined);
    const chain = anchoredChain(leaf, [decoy, intermediate], [root]);
    assert.deepEqual(chain, [leaf, intermediate, root]);
    assert.match(crls.check(chain) ?? '', /Plugged Intermediate CA decoy\) is revoked/);
    // Node's own linking (by name and key id) would have stopped at the decoy: the leaf's CRL verifies under its key, and nothing is revoked.
    assert.equal(crls.check([leaf, decoy]), undefined);
  } finally {
    p.close();
    evil.close();
  }
});

test('PEM cut short (a file caught half written) is an error, not fewer revocations; removeFromCRL revokes nothing', () => {
  const irene = pki.issue(id('irene'));
  pki.revoke('intermediate', irene.leafPem);
  const whole = pki.crl('intermediate').toString();
  assert.throws(() => CrlSet.parse(Buffer.from(whole.slice(0, whole.length - 30))), (err: unknown) => err instanceof CrlError && /no END line/.test(err.message));
  const jack = pki.issue(id('jack'));
  pki.revoke('intermediate', jack.leafPem, 'removeFromCRL');
  const set = CrlSet.parse(pki.crl('intermediate'));
  assert.equal(set.check(chainOf(jack)), undefined);
  assert.match(set.check(chainOf(irene)) ?? '', /revoked/);
});
