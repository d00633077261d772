// SPDX-License-Identifier: Apache-2.0
// The standalone CA: a root made on first start and found again on the next,
// a given root/key pair, and leaves that verify against the root and carry
// what istiod puts in them.
import assert from 'node:assert/strict';
import { webcrypto, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { createCsr } from './csr.ts';
import { IdentityError, IdentityErrorCode } from './error.ts';
import { CA_KEY_FILE, LocalCa, ROOT_CERT_FILE } from './local-ca.ts';
import { pkcs8Pem, x509 } from './x509.ts';

const ID = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' };
const URI = 'spiffe://cluster.local/ns/default/sa/sleep';

let tmp: string;
before(async () => { tmp = await mkdtemp(path.join(tmpdir(), 'skein-local-ca-')); });
after(async () => { await rm(tmp, { recursive: true, force: true }); });

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => err instanceof IdentityError && err.code === code);
}

test('first start writes a P-256 root (O=cluster.local) and its key; the next start loads the same root', async () => {
  const dir = path.join(tmp, 'fresh', 'ca');
  const ca = await LocalCa.open({ dir });
  const certFile = path.join(dir, ROOT_CERT_FILE);
  const keyFile = path.join(dir, CA_KEY_FILE);
  assert.equal(await readFile(certFile, 'utf8'), ca.rootPem);
  assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
  assert.equal((await stat(dir)).mode & 0o777, 0o700);
  assert.match(await readFile(keyFile, 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/);

  const root = new X509Certificate(ca.rootPem);
  assert.equal(root.subject, 'O=cluster.local');
  assert.equal(root.issuer, root.subject);
  assert.equal(root.ca, true);
  assert.ok(root.verify(root.publicKey), 'self-signed');
  assert.equal(root.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  const ku = new x509.X509Certificate(ca.rootPem).getExtension(x509.KeyUsagesExtension);
  assert.equal(ku?.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);

  const again = await LocalCa.open({ dir });
  assert.equal(again.rootPem, ca.rootPem);
  // And what the reloaded CA signs chains to the root written the first time.
  const cert = await again.fetch(ID);
  assert.ok(new X509Certificate(cert.leafPem).verify(root.publicKey));
});

test('an issued leaf verifies against the root and carries what istiod issues', async () => {
  const ca = await LocalCa.generate();
  const { csrPem } = await createCsr(ID);
  const before = Date.now();
  const leafPem = await ca.sign(csrPem, 3600);
  const leaf = new X509Certificate(leafPem);
  const root = new X509Certificate(ca.rootPem);
  assert.ok(leaf.checkIssued(root));
  assert.ok(leaf.verify(root.publicKey));
  assert.equal(leaf.subject, undefined, 'node reports an empty subject as undefined');
  assert.equal(leaf.subjectAltName, `URI:${URI}`);
  assert.equal(leaf.ca, false);
  // node's keyUsage lists the extended key usages: serverAuth, clientAuth.
  assert.deepEqual(leaf.keyUsage.slice().sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
  const lifetime = leaf.validToDate.getTime() - before;
  assert.ok(lifetime > 3_595_000 && lifetime <= 3_601_000, `lifetime ${lifetime}`);

  const parsed = new x509.X509Certificate(leafPem);
  assert.equal(parsed.subject, '');
  const ku = parsed.getExtension(x509.KeyUsagesExtension);
  assert.equal(ku?.usages, x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment);
  assert.equal(ku.critical, true);
  assert.equal(parsed.getExtension(x509.SubjectAlternativeNameExtension)?.critical, true);

  const other = new X509Certificate(await ca.sign((await createCsr(ID)).csrPem));
  assert.notEqual(other.serialNumber, leaf.serialNumber, 'random serials');
});

test('fetch() is a CertificateProvider: [leaf] presented, [root] trusted, default TTL', async () => {
  const ca = await LocalCa.generate({ ttlSeconds: 7200 });
  const cert = await ca.fetch(ID);
  assert.deepEqual(cert.identity, ID);
  assert.deepEqual(cert.chainPems, [cert.leafPem]);
  assert.deepEqual(cert.rootPems, [ca.rootPem]);
  assert.equal(cert.notAfter.getTime() - cert.notBefore.getTime(), 7200_000 + 60_000, 'TTL plus the one-minute backdate');
});

test('a given root/key pair is used as it is; a key of another root is refused', async () => {
  const a = await LocalCa.open({ dir: path.join(tmp, 'a') });
  await LocalCa.open({ dir: path.join(tmp, 'b') });
  const loaded = await LocalCa.open({ certPath: path.join(tmp, 'a', ROOT_CERT_FILE), keyPath: path.join(tmp, 'a', CA_KEY_FILE) });
  assert.equal(loaded.rootPem, a.rootPem);
  await rejectsWith(LocalCa.open({ certPath: path.join(tmp, 'a', ROOT_CERT_FILE), keyPath: path.join(tmp, 'b', CA_KEY_FILE) }), IdentityErrorCode.LOCAL_CA);
  await rejectsWith(LocalCa.open({ certPath: path.join(tmp, 'a', ROOT_CERT_FILE) }), IdentityErrorCode.CONFIG);
  await rejectsWith(LocalCa.open({ certPath: path.join(tmp, 'nope.pem'), keyPath: path.join(tmp, 'nope.key') }), IdentityErrorCode.LOCAL_CA);
});

test('half a pair in the directory is an error and is left alone', async () => {
  const dir = path.join(tmp, 'half');
  await LocalCa.open({ dir });
  await rm(path.join(dir, CA_KEY_FILE));
  const before = await readFile(path.join(dir, ROOT_CERT_FILE), 'utf8');
  await rejectsWith(LocalCa.open({ dir }), IdentityErrorCode.LOCAL_CA);
  assert.equal(await readFile(path.join(dir, ROOT_CERT_FILE), 'utf8'), before);
});

test('an RSA root (as in plugged-in istio cacerts) signs too', async () => {
  const keys = await webcrypto.subtle.generateKey(
    { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }, true, ['sign', 'verify']);
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'O=cluster.local', keys, signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
  });
  const dir = path.join(tmp, 'rsa');
  await LocalCa.open({ dir: path.join(dir, 'unused') });
  await writeFile(path.join(dir, 'ca.pem'), root.toString('pem'));
  await writeFile(path.join(dir, 'ca.key'), await pkcs8Pem(keys.privateKey));
  const ca = await LocalCa.open({ certPath: path.join(dir, 'ca.pem'), keyPath: path.join(dir, 'ca.key') });
  const cert = await ca.fetch(ID);
  assert.ok(new X509Certificate(cert.leafPem).verify(new X509Certificate(root.toString('pem')).publicKey));
});

test('CSRs without exactly one URI SAN, and TTLs out of range, are refused', async () => {
  const ca = await LocalCa.generate({ maxTtlSeconds: 86_400 });
  const keys = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
  const twoSans = await x509.Pkcs10CertificateRequestGenerator.create({
    keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: URI }, { type: 'url', value: URI + '2' }], true)],
  });
  await rejectsWith(ca.sign(twoSans.toString('pem')), IdentityErrorCode.LOCAL_CA);
  await rejectsWith(ca.sign('garbage'), IdentityErrorCode.LOCAL_CA);
  const { csrPem } = await createCsr(ID);
  await rejectsWith(ca.sign(csrPem, 0), IdentityErrorCode.LOCAL_CA);
  await rejectsWith(ca.sign(csrPem, 86_401), IdentityErrorCode.LOCAL_CA);
});

test('leaves never outlive the root', async () => {
  const ca = await LocalCa.generate({ rootTtlSeconds: 600 });
  const cert = await ca.fetch(ID);
  const root = new X509Certificate(ca.rootPem);
  assert.equal(cert.notAfter.getTime(), root.validToDate.getTime());
});
