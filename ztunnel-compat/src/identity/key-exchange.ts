// SPDX-License-Identifier: Apache-2.0
// COMPLIANCE_POLICY=pqc as ztunnel reads it (src/lib.rs PQC_ENABLED, the
// crypto provider in src/tls/lib.rs): every TLS connection the proxy makes or
// takes (HBONE both ways, xDS, the CA) offers and accepts one key exchange,
// the hybrid post-quantum X25519MLKEM768, so a peer without it fails the
// handshake. Without the policy, OpenSSL's default groups, which already
// put that group first.
import { createSecureContext } from 'node:tls';

/** The only group under COMPLIANCE_POLICY=pqc (OpenSSL's name, also the IANA one). */
export const PQC_GROUP = 'X25519MLKEM768';

/** The `ecdhCurve` TLS option: OpenSSL's default groups, or the hybrid group alone. */
export function keyExchangeOptions(pqc: boolean | undefined): { ecdhCurve?: string } {
  return pqc === true ? { ecdhCurve: PQC_GROUP } : {};
}

/**
 * Why this process cannot honour COMPLIANCE_POLICY=pqc (its OpenSSL has no
 * ML-KEM before 3.5), or undefined. ztunnel refuses to start then, and so
 * does Skein: quietly falling back to classical groups would be fail-open.
 */
export function pqcUnavailable(): string | undefined {
  try {
    createSecureContext({ minVersion: 'TLSv1.3', ecdhCurve: PQC_GROUP });
    return undefined;
  } catch (e) {
    return `COMPLIANCE_POLICY=pqc needs ${PQC_GROUP}, which this OpenSSL (${process.versions.openssl}) lacks: ${(e as Error).message}`;
  }
}
