// SPDX-License-Identifier: Apache-2.0
// Certificate signing requests as ztunnel makes them (src/tls/csr.rs): a new
// ECDSA P-256 key for every request, an empty subject, SHA-256, and exactly
// one extension, the SPIFFE URI SAN, marked critical (RFC 5280 §4.2.1.6
// requires that when the subject is empty).
import { identityError, IdentityErrorCode } from './error.ts';
import { spiffeUri } from './spiffe.ts';
import type { Identity } from './spiffe.ts';
import { newP256Keys, P256_SHA256, pkcs8Pem, x509 } from './x509.ts';

export interface CsrAndKey {
  /** PKCS#10 request, PEM. */
  readonly csrPem: string;
  /** The request's private key, PKCS#8 PEM. Never leaves the process. */
  readonly keyPem: string;
}

export async function createCsr(identity: Identity): Promise<CsrAndKey> {
  const uri = spiffeUri(identity);
  try {
    const keys = await newP256Keys();
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      keys,
      signingAlgorithm: P256_SHA256,
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: uri }], true)],
    });
    return { csrPem: csr.toString('pem') + '\n', keyPem: await pkcs8Pem(keys.privateKey) };
  } catch (err) {
    throw identityError(IdentityErrorCode.CSR, `cannot create a CSR for ${uri}: ${(err as Error).message}`, err);
  }
}
