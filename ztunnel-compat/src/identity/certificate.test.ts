// SPDX-License-Identifier: Apache-2.0
// CreateCertificate cert_chain layouts: leaf first, intermediates in the
// middle, a root bundle (maybe several PEMs) last; a lone leaf; an empty
// chain; a leaf for another identity; and the /config_dump entry.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { before, test } from 'node:test';
import { rfc3339, splitPems, WorkloadCertificate } from './certificate.ts';
import { createCsr } from './csr.ts';
import { IdentityError, IdentityErrorCode } from './error.ts';
import type { LogFn } from './log.ts';
import type { Identity } from './spiffe.ts';
import { newP256Keys, P256_SHA256, x509 } from './x509.ts';

const ID: Identity = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' };
const URI = 'spiffe://cluster.local/ns/default/sa/sleep';
const T0 = Date.UTC(2030, 0, 1, 12, 0, 0);

interface TestCa { cert: x509.X509Certificate; pem: string; keys: CryptoKeyPair }
type CryptoKeyPair = Awaited<ReturnType<typeof newP256Keys>>;

async function makeCa(name: string, issuer?: TestCa): Promise<TestCa> {
  const keys = await newP256Keys();
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=${name}`,
    issuer: issuer ? issuer.cert.subjectName : `CN=${name}`,
    publicKey: keys.publicKey,
    signingKey: (issuer ?? { keys }).keys.privateKey,
    signingAlgorithm: P256_SHA256,
    notBefore: new Date(T0 - 86_400_000),
    notAfter: new Date(T0 + 365 * 86_400_000),
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
  });
  return { cert, pem: cert.toString('pem') + '\n', keys };
}

async function leafFor(ca: TestCa, uri: string, publicKey: x509.PublicKey, hours = 24): Promise<string> {
  const cert = await x509.X509CertificateGenerator.create({
    subject: '',
    issuer: ca.cert.subjectName,
    publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: P256_SHA256,
    serialNumber: '0102030405060708090a',
    notBefore: new Date(T0),
    notAfter: new Date(T0 + hours * 3_600_000),
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: uri }], true)],
  });
  return cert.toString('pem') + '\n';
}

/** A leaf for `uri` under `ca`, and the key it was requested with. */
async function issue(ca: TestCa, uri = URI): Promise<{ leaf: string; keyPem: string }> {
  const { csrPem, keyPem } = await createCsr(ID);
  const { publicKey } = new x509.Pkcs10CertificateRequest(csrPem);
  return { leaf: await leafFor(ca, uri, publicKey), keyPem };
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof IdentityError, `expected an IdentityError, got ${String(err)}`);
    return err.code;
  }
  assert.fail('expected a throw');
}

let root: TestCa;
let root2: TestCa;
let inter: TestCa;

before(async () => {
  root = await makeCa('root');
  root2 = await makeCa('root 2');
  inter = await makeCa('intermediate', root);
});

test('[leaf, root]: the leaf is the chain, the root is only trusted', async () => {
  const { leaf, keyPem } = await issue(root);
  const cert = WorkloadCertificate.fromCertChain(ID, [leaf, root.pem], keyPem);
  assert.deepEqual(cert.identity, ID);
  assert.equal(cert.leafPem, leaf);
  assert.deepEqual(cert.chainPems, [leaf]);
  assert.deepEqual(cert.rootPems, [root.pem]);
  assert.equal(cert.keyPem, keyPem);
  assert.equal(cert.notBefore.getTime(), T0);
  assert.equal(cert.notAfter.getTime(), T0 + 24 * 3_600_000);
  assert.equal(cert.refreshAt.getTime(), T0 + 12 * 3_600_000, 'half-life');
  assert.equal(cert.serial, BigInt('0x0102030405060708090a').toString(10));
  assert.equal(cert.serial, BigInt('0x' + new X509Certificate(leaf).serialNumber).toString(10));
  assert.equal(cert.isExpired(T0 + 24 * 3_600_000 - 1), false);
  assert.equal(cert.isExpired(T0 + 24 * 3_600_000), true);
});

test('[leaf, intermediate, root]: intermediates are presented, the root never is', async () => {
  const { leaf, keyPem } = await issue(inter);
  const cert = WorkloadCertificate.fromCertChain(ID, [leaf, inter.pem, root.pem], keyPem);
  assert.deepEqual(cert.chainPems, [leaf, inter.pem]);
  assert.deepEqual(cert.rootPems, [root.pem]);
  // The presented chain really leads to the trusted root.
  const [l, i] = cert.chainPems.map((p) => new X509Certificate(p));
  const r = new X509Certificate(root.pem);
  assert.ok(l && i && l.checkIssued(i) && l.verify(i.publicKey) && i.checkIssued(r) && i.verify(r.publicKey));
});

test('the last entry may be a bundle of several roots; each is trusted', async () => {
  const { leaf, keyPem } = await issue(inter);
  // As istiod sends them: joined, with and without a blank line between.
  const bundle = root.pem + '\n' + root2.pem.trimEnd();
  const cert = WorkloadCertificate.fromCertChain(ID, [leaf, inter.pem, bundle], keyPem);
  assert.deepEqual(cert.rootPems, [root.pem, root2.pem]);
  assert.deepEqual(cert.chainPems, [leaf, inter.pem]);
  assert.equal(cert.toConfigDump().rootCerts.length, 2);
});

test('a lone leaf has no chain and no roots, with a warning', async () => {
  const { leaf, keyPem } = await issue(root);
  const warnings: string[] = [];
  const warn: LogFn = (_fields, msg) => { warnings.push(msg); };
  const nothing: LogFn = () => undefined;
  const cert = WorkloadCertificate.fromCertChain(ID, [leaf], keyPem, { logger: { debug: nothing, info: nothing, warn } });
  assert.deepEqual(cert.chainPems, [leaf]);
  assert.deepEqual(cert.rootPems, []);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0] ?? '', /no chain certs/);
});

test('an empty cert_chain is EMPTY_RESPONSE', async () => {
  const { keyPem } = await issue(root);
  assert.equal(codeOf(() => WorkloadCertificate.fromCertChain(ID, [], keyPem)), IdentityErrorCode.EMPTY_RESPONSE);
});

test('a leaf for another identity is SAN_MISMATCH', async () => {
  const { leaf, keyPem } = await issue(root, 'spiffe://cluster.local/ns/default/sa/admin');
  assert.equal(codeOf(() => WorkloadCertificate.fromCertChain(ID, [leaf, root.pem], keyPem)), IdentityErrorCode.SAN_MISMATCH);
  try {
    WorkloadCertificate.fromCertChain(ID, [leaf, root.pem], keyPem);
  } catch (err) {
    assert.match((err as Error).message, /for spiffe:\/\/cluster\.local\/ns\/default\/sa\/admin, expected spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep/);
  }
  const other = await issue(root, 'spiffe://other.domain/ns/default/sa/sleep');
  assert.equal(codeOf(() => WorkloadCertificate.fromCertChain(ID, [other.leaf, root.pem], other.keyPem)), IdentityErrorCode.SAN_MISMATCH);
});

test('garbage entries and a key that is not the leaf\'s are CERT_PARSE', async () => {
  const { leaf, keyPem } = await issue(root);
  const another = await issue(root);
  assert.equal(codeOf(() => WorkloadCertificate.fromCertChain(ID, ['not a pem', root.pem], keyPem)), IdentityErrorCode.CERT_PARSE);
  assert.equal(codeOf(() => WorkloadCertificate.fromCertChain(ID, [leaf, 'junk', root.pem], keyPem)), IdentityErrorCode.CERT_PARSE);
  assert.equal(codeOf(() => WorkloadCertificate.fromCertChain(ID, [leaf, 'junk'], keyPem)), IdentityErrorCode.CERT_PARSE);
  assert.equal(codeOf(() => WorkloadCertificate.fromCertChain(ID, [leaf, root.pem], another.keyPem)), IdentityErrorCode.CERT_PARSE);
  assert.equal(codeOf(() => WorkloadCertificate.fromCertChain(ID, [leaf + inter.pem, root.pem], keyPem)), IdentityErrorCode.CERT_PARSE);
});

test('toConfigDump has ztunnel\'s CertsDump shape: base64 PEM, decimal serial, RFC 3339 seconds', async () => {
  const { leaf, keyPem } = await issue(inter);
  const dump = WorkloadCertificate.fromCertChain(ID, [leaf, inter.pem, root.pem], keyPem).toConfigDump();
  assert.deepEqual(Object.keys(dump), ['identity', 'state', 'certChain', 'rootCerts']);
  assert.equal(dump.identity, URI);
  assert.equal(dump.state, 'Available');
  assert.equal(dump.certChain.length, 2);
  const [first] = dump.certChain;
  assert.deepEqual(first, {
    pem: Buffer.from(leaf).toString('base64'),
    serialNumber: '4759477275222530853130', // int('0102030405060708090a', 16)
    validFrom: '2030-01-01T12:00:00Z',
    expirationTime: '2030-01-02T12:00:00Z',
  });
  assert.equal(Buffer.from(dump.rootCerts[0]?.pem ?? '', 'base64').toString(), root.pem);
  assert.equal(dump.rootCerts[0]?.validFrom, '2029-12-31T12:00:00Z');
});

test('splitPems and rfc3339', () => {
  assert.deepEqual(splitPems('x\n-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----junk-----BEGIN CERTIFICATE-----\nBB\n-----END CERTIFICATE-----'), [
    '-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n',
    '-----BEGIN CERTIFICATE-----\nBB\n-----END CERTIFICATE-----\n',
  ]);
  assert.deepEqual(splitPems(''), []);
  assert.equal(rfc3339(new Date(Date.UTC(2023, 2, 11, 5, 57, 26, 999))), '2023-03-11T05:57:26Z');
});
