// SPDX-License-Identifier: Apache-2.0
// A workload certificate as istiod's CreateCertificate returns it, parsed
// once (ztunnel src/tls/certificate.rs + src/identity/caclient.rs):
// cert_chain[0] is the leaf, the middle entries are intermediates, and the
// LAST entry is the root bundle, which may hold several PEMs. The leaf and
// intermediates are presented in TLS; the roots are only trusted, never sent.
// Also the `certificates` entry of /config_dump (ztunnel src/admin.rs
// CertsDump, read by istioctl's ztunnel configdump package).
import { createPrivateKey, X509Certificate as NodeX509 } from 'node:crypto';
import { identityError, IdentityErrorCode } from './error.ts';
import { silentLogger } from './log.ts';
import type { IdentityLogger } from './log.ts';
import { spiffeUri } from './spiffe.ts';
import type { Identity } from './spiffe.ts';
import { x509 } from './x509.ts';

/** Something that turns an identity into a certificate: the istiod client or the local CA. */
export interface CertificateProvider {
  fetch(identity: Identity, opts?: FetchOptions): Promise<WorkloadCertificate>;
}

/**
 * One identity's certificate as a server uses it (an HBONE server's
 * injected source; the SecretManager makes one with sourceFor).
 */
export interface CertificateSource {
  /** The certificate valid now, or undefined; never waits, never returns an expired one. */
  current(): WorkloadCertificate | undefined;
  /** Gets one now (on demand); rejects when none can be had. */
  fetch(): Promise<WorkloadCertificate>;
  /** Calls `fn` with each new certificate (rotation); returns the unsubscribe. */
  subscribe?(fn: (cert: WorkloadCertificate) => void): () => void;
}

export interface FetchOptions {
  /** Ask for another workload's identity (shared mode); defaults to the provider's setting. */
  impersonate?: boolean;
}

/** One certificate in /config_dump; names as ztunnel's admin.rs CertDump. */
export interface CertDump {
  /** Base64 of the PEM text (not of the DER). */
  pem: string;
  /** Decimal. */
  serialNumber: string;
  /** RFC 3339, whole seconds, UTC. */
  validFrom: string;
  expirationTime: string;
}

/** One identity in /config_dump's `certificates`; names as ztunnel's admin.rs CertsDump. */
export interface CertsDump {
  identity: string;
  /** "Initializing", "Available", or "Unavailable: <error>". */
  state: string;
  certChain: CertDump[];
  rootCerts: CertDump[];
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** Every CERTIFICATE block in `text`, each on its own with one trailing newline. */
export function splitPems(text: string): string[] {
  return [...text.matchAll(PEM_BLOCK)].map((m) => m[0] + '\n');
}

/** RFC 3339 in whole seconds, as ztunnel's chrono SecondsFormat::Secs. */
export function rfc3339(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

interface ParsedCert {
  pem: string;
  cert: x509.X509Certificate;
  serial: string;
}

function parseOne(pem: string, what: string): ParsedCert {
  try {
    const cert = new x509.X509Certificate(pem);
    // x509-parser's BigUint Display, which ztunnel prints, is decimal.
    return { pem, cert, serial: BigInt('0x' + (cert.serialNumber || '0')).toString(10) };
  } catch (err) {
    throw identityError(IdentityErrorCode.CERT_PARSE, `${what} is not a PEM certificate: ${(err as Error).message}`, err);
  }
}

function onlyPem(text: string, what: string): ParsedCert {
  const [pem, ...more] = splitPems(text);
  if (pem === undefined) throw identityError(IdentityErrorCode.CERT_PARSE, `${what} holds no PEM certificate`);
  if (more.length > 0) throw identityError(IdentityErrorCode.CERT_PARSE, `${what} holds ${more.length + 1} certificates, expected one`);
  return parseOne(pem, what);
}

function dumpOf(p: ParsedCert): CertDump {
  return {
    pem: Buffer.from(p.pem).toString('base64'),
    serialNumber: p.serial,
    validFrom: rfc3339(p.cert.notBefore),
    expirationTime: rfc3339(p.cert.notAfter),
  };
}

function uriSans(cert: x509.X509Certificate): string[] {
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  return san?.names.items.filter((n) => n.type === 'url').map((n) => n.value) ?? [];
}

export interface ParseChainOptions {
  logger?: IdentityLogger;
}

export class WorkloadCertificate {
  readonly identity: Identity;
  readonly leafPem: string;
  /** Leaf then intermediates: what TLS presents. Never the root. */
  readonly chainPems: readonly string[];
  /** The trust anchors from the response's last entry. */
  readonly rootPems: readonly string[];
  /** PKCS#8 PEM of the leaf's key. */
  readonly keyPem: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** The leaf's serial, decimal. */
  readonly serial: string;
  readonly #chain: readonly ParsedCert[];
  readonly #roots: readonly ParsedCert[];

  private constructor(identity: Identity, keyPem: string, chain: ParsedCert[], roots: ParsedCert[]) {
    const [leaf] = chain;
    if (leaf === undefined) throw identityError(IdentityErrorCode.EMPTY_RESPONSE, `no leaf certificate for ${spiffeUri(identity)}`);
    this.identity = identity;
    this.keyPem = keyPem;
    this.#chain = chain;
    this.#roots = roots;
    this.leafPem = leaf.pem;
    this.chainPems = Object.freeze(chain.map((c) => c.pem));
    this.rootPems = Object.freeze(roots.map((c) => c.pem));
    this.notBefore = leaf.cert.notBefore;
    this.notAfter = leaf.cert.notAfter;
    this.serial = leaf.serial;
  }

  /**
   * Builds the certificate from a CreateCertificate `cert_chain` and the key
   * its CSR was made with. Throws IdentityError: EMPTY_RESPONSE, CERT_PARSE,
   * SAN_MISMATCH (the leaf's first URI SAN must be exactly `identity`).
   */
  static fromCertChain(identity: Identity, certChain: readonly string[], keyPem: string, opts: ParseChainOptions = {}): WorkloadCertificate {
    const uri = spiffeUri(identity);
    const [leafText, ...rest] = certChain;
    if (leafText === undefined) throw identityError(IdentityErrorCode.EMPTY_RESPONSE, `the CA returned no certificates for ${uri}`);
    const leaf = onlyPem(leafText, 'cert_chain[0] (leaf)');
    const rootText = rest.pop();
    const intermediates = rest.map((text, i) => onlyPem(text, `cert_chain[${i + 1}] (intermediate)`));
    let roots: ParsedCert[] = [];
    if (rootText === undefined) {
      (opts.logger ?? silentLogger).warn({ identity: uri }, 'no chain certs: the CA response holds only the leaf, so there is no root to trust');
    } else {
      const pems = splitPems(rootText);
      if (pems.length === 0) throw identityError(IdentityErrorCode.CERT_PARSE, `cert_chain[${certChain.length - 1}] (root bundle) holds no PEM certificate`);
      roots = pems.map((pem, i) => parseOne(pem, `root ${i} of the bundle`));
    }

    const got = uriSans(leaf.cert)[0];
    if (got !== uri) {
      throw identityError(IdentityErrorCode.SAN_MISMATCH, `the CA issued a certificate for ${got ?? 'no URI SAN'}, expected ${uri}`);
    }
    let matches: boolean;
    try {
      matches = new NodeX509(leaf.pem).checkPrivateKey(createPrivateKey(keyPem));
    } catch (err) {
      throw identityError(IdentityErrorCode.CERT_PARSE, `the private key for ${uri} does not parse: ${(err as Error).message}`, err);
    }
    if (!matches) throw identityError(IdentityErrorCode.CERT_PARSE, `the leaf for ${uri} does not hold the public half of the CSR's key`);
    return new WorkloadCertificate(identity, keyPem, [leaf, ...intermediates], roots);
  }

  /** When to rotate: half way through the leaf's validity (ztunnel refresh_at). */
  get refreshAt(): Date {
    const nb = this.notBefore.getTime();
    const na = this.notAfter.getTime();
    return new Date(na < nb ? na : nb + (na - nb) / 2);
  }

  isExpired(now: number = Date.now()): boolean {
    return now >= this.notAfter.getTime();
  }

  /** This certificate's /config_dump entry, state "Available". */
  toConfigDump(): CertsDump {
    return {
      identity: spiffeUri(this.identity),
      state: 'Available',
      certChain: this.#chain.map(dumpOf),
      rootCerts: this.#roots.map(dumpOf),
    };
  }
}
