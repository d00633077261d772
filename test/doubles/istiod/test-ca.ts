// SPDX-License-Identifier: Apache-2.0
// A throwaway root CA for tests: ECDSA P-256 keys from node's WebCrypto,
// certificates and CSRs built with @peculiar/x509. It issues the istiod
// double's serving certificate and workload leaves from CSRs, and can make
// CSRs the way ztunnel does (empty subject, one critical URI SAN).
// @peculiar/x509 (through tsyringe) needs the Reflect metadata API at import.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto);

// No DOM lib here, so WebCrypto's types come from node:crypto.
type KeyPair = webcrypto.CryptoKeyPair;

const P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export type Curve = 'P-256' | 'P-384';

export interface KeyAndCert { certPem: string; keyPem: string }

/** What the CA needs from a CSR, after its signature was checked. */
export interface ParsedCsr {
  publicKey: x509.PublicKey;
  /** The key's named curve, or its algorithm name when it is not EC. */
  curve: string;
  uris: string[];
}

/** A CSR that is not PEM, not a CSR, or not signed by its own key. */
export class CsrError extends Error {
  override name = 'CsrError';
}

async function newKeys(curve: Curve = 'P-256'): Promise<KeyPair> {
  return await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: curve }, true, ['sign', 'verify']);
}

async function keyPem(key: webcrypto.CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

export class TestCa {
  readonly rootPem: string;
  readonly #root: x509.X509Certificate;
  readonly #keys: KeyPair;

  private constructor(root: x509.X509Certificate, keys: KeyPair) {
    this.#root = root;
    this.#keys = keys;
    this.rootPem = root.toString('pem') + '\n';
  }

  static async create(name = 'O=Skein test,CN=Skein test root CA'): Promise<TestCa> {
    const keys = await newKeys();
    const root = await x509.X509CertificateGenerator.createSelfSigned({
      name,
      keys,
      signingAlgorithm: P256,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 30 * 86_400_000),
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    return new TestCa(root, keys);
  }

  /** This root's CRL revoking `serials` (hex), as an operator publishes ca-crl.pem with a plugged-in CA. */
  async crl(serials: readonly string[]): Promise<string> {
    const crl = await x509.X509CrlGenerator.create({
      issuer: this.#root.subjectName,
      thisUpdate: new Date(Date.now() - 60_000),
      nextUpdate: new Date(Date.now() + 86_400_000),
      entries: serials.map((serialNumber) => ({ serialNumber, revocationDate: new Date() })),
      signingKey: this.#keys.privateKey,
      signingAlgorithm: P256,
    });
    return crl.toString('pem') + '\n';
  }

  /** A TLS server certificate; the default names are the ones istiod is reached by. */
  async issueServerCert(
    dnsNames = ['istiod.istio-system.svc', 'localhost'],
    ips = ['127.0.0.1', '::1'],
  ): Promise<KeyAndCert> {
    const keys = await newKeys();
    const names = [...dnsNames.map((value) => ({ type: 'dns' as const, value })), ...ips.map((value) => ({ type: 'ip' as const, value }))];
    const cert = await this.#sign(keys.publicKey, 'CN=istiod', 365 * 86_400, [
      new x509.SubjectAlternativeNameExtension(names, false),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    ]);
    return { certPem: cert, keyPem: await keyPem(keys.privateKey) };
  }

  /**
   * A workload leaf for `uri`, valid for `validitySeconds`, as istiod issues
   * them: empty subject, the SPIFFE URI as the only (critical) SAN.
   */
  async issueLeaf(csr: ParsedCsr, uri: string, validitySeconds: number): Promise<string> {
    return await this.#sign(csr.publicKey, '', validitySeconds, [
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: uri }], true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
    ]);
  }

  async #sign(publicKey: x509.PublicKey | webcrypto.CryptoKey, subject: string, validitySeconds: number, extensions: x509.Extension[]): Promise<string> {
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.create({
      subject,
      issuer: this.#root.subject,
      publicKey,
      signingKey: this.#keys.privateKey,
      signingAlgorithm: P256,
      // Back-dated a little so clock skew between test steps never matters.
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + validitySeconds * 1000),
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        await x509.AuthorityKeyIdentifierExtension.create(this.#keys.publicKey),
        ...extensions,
      ],
    });
    return cert.toString('pem') + '\n';
  }
}

/** Parses a PEM CSR and checks its self-signature. Throws CsrError. */
export async function parseCsr(pem: string): Promise<ParsedCsr> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(pem);
  } catch (err) {
    throw new CsrError(`not a PEM certificate request: ${(err as Error).message}`);
  }
  if (!(await csr.verify().catch(() => false))) throw new CsrError('CSR signature does not verify');
  const algorithm = csr.publicKey.algorithm as webcrypto.EcKeyAlgorithm;
  const san = csr.extensions.find((e) => e instanceof x509.SubjectAlternativeNameExtension);
  return {
    publicKey: csr.publicKey,
    curve: algorithm.name === 'ECDSA' ? algorithm.namedCurve : algorithm.name,
    uris: san?.names.items.filter((n) => n.type === 'url').map((n) => n.value) ?? [],
  };
}

/** A CSR as ztunnel makes one: fresh key, empty subject, critical URI SANs. */
export async function createCsr(uris: string[], curve: Curve = 'P-256'): Promise<{ csrPem: string; keyPem: string }> {
  const keys = await newKeys(curve);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: curve === 'P-256' ? 'SHA-256' : 'SHA-384' },
    extensions: uris.length > 0 ? [new x509.SubjectAlternativeNameExtension(uris.map((value) => ({ type: 'url' as const, value })), true)] : [],
  });
  return { csrPem: csr.toString('pem'), keyPem: await keyPem(keys.privateKey) };
}
