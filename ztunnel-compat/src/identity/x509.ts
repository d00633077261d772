// SPDX-License-Identifier: Apache-2.0
// The one place the identity code loads @peculiar/x509: it needs the Reflect
// metadata API before import and a WebCrypto provider before signing.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto);

export { x509 };

/** ECDSA P-256 with SHA-256: every key Skein makes, and what istiod expects in a CSR. */
export const P256_SHA256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export async function newP256Keys(): Promise<webcrypto.CryptoKeyPair> {
  return await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
}

/** A private key as PKCS#8 PEM ("BEGIN PRIVATE KEY"). */
export async function pkcs8Pem(key: webcrypto.CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY') + '\n';
}
