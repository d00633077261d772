// SPDX-License-Identifier: Apache-2.0
// The built-in CA for standalone mode, when there is no istiod to ask. It
// creates an ECDSA P-256 root (self-signed, O=cluster.local, as istiod's own
// self-signed root is named) on first start and keeps it on disk, or loads a
// given root/key pair, and signs CSRs the way istiod does: the CSR's URI SAN
// (critical, empty subject), digitalSignature|keyEncipherment,
// serverAuth+clientAuth, a random serial and the requested TTL.
import { randomBytes, createPrivateKey, X509Certificate as NodeX509 } from 'node:crypto';
import type { KeyObject, webcrypto } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { WorkloadCertificate } from './certificate.ts';
import type { CertificateProvider } from './certificate.ts';
import { createCsr } from './csr.ts';
import { identityError, IdentityErrorCode } from './error.ts';
import { silentLogger } from './log.ts';
import type { IdentityLogger } from './log.ts';
import type { Identity } from './spiffe.ts';
import { newP256Keys, P256_SHA256, pkcs8Pem, x509 } from './x509.ts';

export const ROOT_CERT_FILE = 'root-cert.pem';
export const CA_KEY_FILE = 'ca-key.pem';

const DAY_S = 86_400;
/** Leaves start a minute early so a peer whose clock is slightly behind still accepts them. */
const BACKDATE_MS = 60_000;

export interface LocalCaOptions {
  /** Default leaf lifetime (SECRET_TTL). Default 24 h. */
  ttlSeconds?: number;
  /** Longest lifetime a CSR may ask for. Default 90 days, as istiod's max workload cert TTL. */
  maxTtlSeconds?: number;
  /** Lifetime of a generated root. Default 10 years, as istiod's self-signed root. */
  rootTtlSeconds?: number;
  /** Organization of a generated root. Default "cluster.local". */
  organization?: string;
  /** Milliseconds since the epoch; injectable for tests. */
  now?: () => number;
  logger?: IdentityLogger;
}

export interface OpenLocalCaOptions extends LocalCaOptions {
  /** Where root-cert.pem and ca-key.pem live; both are created there on first start. */
  dir?: string;
  /** A given root certificate and key (both or neither); takes precedence over `dir`. */
  certPath?: string;
  keyPath?: string;
}

interface SigningKey {
  key: webcrypto.CryptoKey;
  algorithm: { name: string; hash: string };
}

/** The WebCrypto view of a PEM private key (PKCS#8, SEC1 or PKCS#1): ECDSA P-256/P-384 or RSA. */
function signingKey(keyPem: string): SigningKey {
  let ko: KeyObject;
  try {
    ko = createPrivateKey(keyPem);
  } catch (err) {
    throw identityError(IdentityErrorCode.LOCAL_CA, `the CA key does not parse: ${(err as Error).message}`, err);
  }
  if (ko.asymmetricKeyType === 'ec') {
    const curve = ko.asymmetricKeyDetails?.namedCurve;
    const named = curve === 'prime256v1' ? 'P-256' : curve === 'secp384r1' ? 'P-384' : undefined;
    if (named === undefined) throw identityError(IdentityErrorCode.LOCAL_CA, `the CA key's curve ${curve ?? '?'} is not supported (P-256, P-384)`);
    const hash = named === 'P-256' ? 'SHA-256' : 'SHA-384';
    return { key: ko.toCryptoKey({ name: 'ECDSA', namedCurve: named }, false, ['sign']), algorithm: { name: 'ECDSA', hash } };
  }
  if (ko.asymmetricKeyType === 'rsa') {
    const algorithm = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
    return { key: ko.toCryptoKey(algorithm, false, ['sign']), algorithm };
  }
  throw identityError(IdentityErrorCode.LOCAL_CA, `the CA key type ${ko.asymmetricKeyType ?? '?'} is not supported (EC, RSA)`);
}

async function readPair(certPath: string, keyPath: string): Promise<[string, string]> {
  try {
    return [await readFile(certPath, 'utf8'), await readFile(keyPath, 'utf8')];
  } catch (err) {
    throw identityError(IdentityErrorCode.LOCAL_CA, `cannot read the CA pair ${certPath}, ${keyPath}: ${(err as Error).message}`, err);
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw identityError(IdentityErrorCode.LOCAL_CA, `cannot look at ${file}: ${(err as Error).message}`, err);
  }
}

/** Write then rename, so a crash never leaves half a key behind. */
async function writeAtomic(file: string, data: string, mode: number): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await writeFile(tmp, data, { mode, flag: 'wx' });
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

export class LocalCa implements CertificateProvider {
  /** The root, PEM; what peers and the lab trust. */
  readonly rootPem: string;
  readonly #root: x509.X509Certificate;
  readonly #key: SigningKey;
  readonly #ttl: number;
  readonly #maxTtl: number;
  readonly #now: () => number;
  readonly #logger: IdentityLogger;

  private constructor(root: x509.X509Certificate, rootPem: string, key: SigningKey, opts: LocalCaOptions) {
    this.#root = root;
    this.rootPem = rootPem;
    this.#key = key;
    this.#ttl = opts.ttlSeconds ?? DAY_S;
    this.#maxTtl = opts.maxTtlSeconds ?? 90 * DAY_S;
    this.#now = opts.now ?? Date.now;
    this.#logger = opts.logger ?? silentLogger;
    if (!(this.#ttl > 0 && this.#ttl <= this.#maxTtl)) {
      throw identityError(IdentityErrorCode.CONFIG, `local CA TTL ${this.#ttl} s is not within (0, ${this.#maxTtl}] s`);
    }
  }

  /** A new root that lives only in memory (tests, FAKE_CA). */
  static async generate(opts: LocalCaOptions = {}): Promise<LocalCa> {
    const { certPem, keyPem } = await LocalCa.#newRoot(opts);
    return LocalCa.fromPem(certPem, keyPem, opts);
  }

  /**
   * The given pair when `certPath`/`keyPath` are set; else the pair in `dir`,
   * generated there (dir 0700, key 0600) when neither file exists yet.
   */
  static async open(opts: OpenLocalCaOptions): Promise<LocalCa> {
    if ((opts.certPath === undefined) !== (opts.keyPath === undefined)) {
      throw identityError(IdentityErrorCode.CONFIG, 'local CA: give both a certificate and a key path, or neither');
    }
    if (opts.certPath !== undefined && opts.keyPath !== undefined) {
      const [certPem, keyPem] = await readPair(opts.certPath, opts.keyPath);
      return LocalCa.fromPem(certPem, keyPem, opts);
    }
    if (opts.dir === undefined) throw identityError(IdentityErrorCode.CONFIG, 'local CA: no directory and no certificate/key paths');
    const certPath = path.join(opts.dir, ROOT_CERT_FILE);
    const keyPath = path.join(opts.dir, CA_KEY_FILE);
    const [haveCert, haveKey] = [await exists(certPath), await exists(keyPath)];
    if (haveCert && haveKey) {
      const [certPem, keyPem] = await readPair(certPath, keyPath);
      return LocalCa.fromPem(certPem, keyPem, opts);
    }
    // One without the other is someone's half-done copy: never overwrite it.
    if (haveCert || haveKey) {
      throw identityError(IdentityErrorCode.LOCAL_CA, `${opts.dir} holds ${haveCert ? ROOT_CERT_FILE : CA_KEY_FILE} without ${haveCert ? CA_KEY_FILE : ROOT_CERT_FILE}`);
    }
    const { certPem, keyPem } = await LocalCa.#newRoot(opts);
    try {
      await mkdir(opts.dir, { recursive: true, mode: 0o700 });
      // Key first: a root-cert.pem on disk always has its key beside it.
      await writeAtomic(keyPath, keyPem, 0o600);
      await writeAtomic(certPath, certPem, 0o644);
    } catch (err) {
      throw identityError(IdentityErrorCode.LOCAL_CA, `cannot write the new CA to ${opts.dir}: ${(err as Error).message}`, err);
    }
    (opts.logger ?? silentLogger).info({ dir: opts.dir }, 'generated a new local root CA');
    return LocalCa.fromPem(certPem, keyPem, opts);
  }

  /** A CA from a root certificate and its private key, checked to belong together. */
  static fromPem(certPem: string, keyPem: string, opts: LocalCaOptions = {}): LocalCa {
    let root: x509.X509Certificate;
    let matches: boolean;
    try {
      root = new x509.X509Certificate(certPem);
      matches = new NodeX509(certPem).checkPrivateKey(createPrivateKey(keyPem));
    } catch (err) {
      throw identityError(IdentityErrorCode.LOCAL_CA, `the CA certificate or key does not parse: ${(err as Error).message}`, err);
    }
    if (!matches) throw identityError(IdentityErrorCode.LOCAL_CA, 'the CA key does not belong to the CA certificate');
    if (root.getExtension(x509.BasicConstraintsExtension)?.ca !== true) {
      throw identityError(IdentityErrorCode.LOCAL_CA, `the CA certificate ${root.subject} is not a CA (basicConstraints CA:TRUE missing)`);
    }
    const now = (opts.now ?? Date.now)();
    if (now >= root.notAfter.getTime()) throw identityError(IdentityErrorCode.LOCAL_CA, `the CA certificate expired at ${root.notAfter.toISOString()}`);
    return new LocalCa(root, root.toString('pem') + '\n', signingKey(keyPem), opts);
  }

  static async #newRoot(opts: LocalCaOptions): Promise<{ certPem: string; keyPem: string }> {
    const now = (opts.now ?? Date.now)();
    const keys = await newP256Keys();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      name: [{ O: [opts.organization ?? 'cluster.local'] }],
      keys,
      signingAlgorithm: P256_SHA256,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(now + (opts.rootTtlSeconds ?? 10 * 365 * DAY_S) * 1000),
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    return { certPem: cert.toString('pem') + '\n', keyPem: await pkcs8Pem(keys.privateKey) };
  }

  /**
   * Signs a PEM CSR for its single URI SAN, valid for `ttlSeconds` (never
   * past the root's own expiry). Returns the leaf PEM. Throws LOCAL_CA.
   */
  async sign(csrPem: string, ttlSeconds: number = this.#ttl): Promise<string> {
    if (!(ttlSeconds > 0 && ttlSeconds <= this.#maxTtl)) {
      throw identityError(IdentityErrorCode.LOCAL_CA, `requested TTL ${ttlSeconds} s is not within (0, ${this.#maxTtl}] s`);
    }
    let csr: x509.Pkcs10CertificateRequest;
    try {
      csr = new x509.Pkcs10CertificateRequest(csrPem);
    } catch (err) {
      throw identityError(IdentityErrorCode.LOCAL_CA, `not a PEM certificate request: ${(err as Error).message}`, err);
    }
    if (!(await csr.verify().catch(() => false))) throw identityError(IdentityErrorCode.LOCAL_CA, 'the CSR signature does not verify');
    const san = csr.extensions.find((e) => e instanceof x509.SubjectAlternativeNameExtension);
    const uris = san?.names.items.filter((n) => n.type === 'url').map((n) => n.value) ?? [];
    const [uri] = uris;
    if (uri === undefined || uris.length !== 1) throw identityError(IdentityErrorCode.LOCAL_CA, `a CSR must carry exactly one URI SAN, got ${uris.length}`);

    const now = this.#now();
    const notAfter = Math.min(now + ttlSeconds * 1000, this.#root.notAfter.getTime());
    const ski = this.#root.getExtension(x509.SubjectKeyIdentifierExtension);
    const cert = await x509.X509CertificateGenerator.create({
      // An empty subject, so the SAN is critical (RFC 5280 §4.2.1.6).
      subject: '',
      issuer: this.#root.subjectName,
      publicKey: csr.publicKey,
      signingKey: this.#key.key,
      signingAlgorithm: this.#key.algorithm,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(notAfter),
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        ski ? new x509.AuthorityKeyIdentifierExtension(ski.keyId) : await x509.AuthorityKeyIdentifierExtension.create(this.#root.publicKey),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: uri }], true),
      ],
    });
    this.#logger.debug({ identity: uri, notAfter: new Date(notAfter).toISOString() }, 'local CA issued a certificate');
    return cert.toString('pem') + '\n';
  }

  /** The CertificateProvider side: new key and CSR, signed here, checked like a CA response. */
  async fetch(identity: Identity): Promise<WorkloadCertificate> {
    const { csrPem, keyPem } = await createCsr(identity);
    const leaf = await this.sign(csrPem);
    return WorkloadCertificate.fromCertChain(identity, [leaf, this.rootPem], keyPem, { logger: this.#logger });
  }
}
