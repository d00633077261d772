// SPDX-License-Identifier: Apache-2.0
// CSRs parse back the way istiod reads them: empty subject, one critical URI
// SAN and nothing else, a fresh ECDSA P-256 key, SHA-256, a valid signature.
import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { test } from 'node:test';
import { parseCsr } from '../../../test/doubles/istiod/test-ca.ts';
import { createCsr } from './csr.ts';
import { x509 } from './x509.ts';

const ID = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' };
const URI = 'spiffe://cluster.local/ns/default/sa/sleep';

test('the CSR has an empty subject and exactly one extension: a critical URI SAN', async () => {
  const { csrPem } = await createCsr(ID);
  assert.match(csrPem, /^-----BEGIN CERTIFICATE REQUEST-----\n[\s\S]+\n-----END CERTIFICATE REQUEST-----\n$/);
  const csr = new x509.Pkcs10CertificateRequest(csrPem);
  assert.equal(csr.subject, '');
  assert.equal(csr.attributes.length, 1, 'only the extensionRequest attribute');
  assert.equal(csr.extensions.length, 1);
  const [san] = csr.extensions;
  assert.ok(san instanceof x509.SubjectAlternativeNameExtension);
  assert.equal(san.critical, true);
  assert.deepEqual(san.names.items.map((n) => [n.type, n.value]), [['url', URI]]);
});

test('the CSR is signed with ECDSA P-256 / SHA-256 and verifies', async () => {
  const { csrPem } = await createCsr(ID);
  const csr = new x509.Pkcs10CertificateRequest(csrPem);
  assert.deepEqual(csr.signatureAlgorithm, { name: 'ECDSA', hash: { name: 'SHA-256' } });
  const algorithm = csr.publicKey.algorithm as { name: string; namedCurve?: string };
  assert.equal(algorithm.name, 'ECDSA');
  assert.equal(algorithm.namedCurve, 'P-256');
  assert.equal(await csr.verify(), true);
  // The istiod double parses it the same way.
  const parsed = await parseCsr(csrPem);
  assert.equal(parsed.curve, 'P-256');
  assert.deepEqual(parsed.uris, [URI]);
});

test('the private key is PKCS#8 PEM and is the CSR key\'s private half', async () => {
  const { csrPem, keyPem } = await createCsr(ID);
  assert.match(keyPem, /^-----BEGIN PRIVATE KEY-----\n[\s\S]+\n-----END PRIVATE KEY-----\n$/);
  const key = createPrivateKey(keyPem);
  assert.equal(key.asymmetricKeyType, 'ec');
  assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  const fromKey = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const fromCsr = Buffer.from(new x509.Pkcs10CertificateRequest(csrPem).publicKey.rawData);
  assert.deepEqual(fromKey, fromCsr);
});

test('every request gets a new key', async () => {
  const a = await createCsr(ID);
  const b = await createCsr(ID);
  assert.notEqual(a.keyPem, b.keyPem);
  assert.notDeepEqual(
    new x509.Pkcs10CertificateRequest(a.csrPem).publicKey.rawData,
    new x509.Pkcs10CertificateRequest(b.csrPem).publicKey.rawData,
  );
});
