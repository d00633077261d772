// SPDX-License-Identifier: Apache-2.0
// Codes for the identity subsystem's one error class, IdentityError (defined
// beside the SPIFFE parser in spiffe.ts), and a helper that attaches the
// underlying error as `cause` (e.g. the grpc-js ServiceError with its status).
import { IdentityError } from './spiffe.ts';

export { IdentityError };

export const IdentityErrorCode = Object.freeze({
  /** Could not make a key or CSR. */
  CSR: 'SKEIN_CSR',
  /** The CA answered with an empty cert_chain. */
  EMPTY_RESPONSE: 'SKEIN_EMPTY_RESPONSE',
  /** A certificate or key in a response, file or chain does not parse or does not match. */
  CERT_PARSE: 'SKEIN_CERT_PARSE',
  /** A certificate that is not valid now: issued already expired, or not yet valid. */
  CERT_EXPIRED: 'SKEIN_CERT_EXPIRED',
  /** The leaf's URI SAN is not the identity that was asked for. */
  SAN_MISMATCH: 'SKEIN_SAN_MISMATCH',
  /** CreateCertificate ended with a gRPC error status; `cause` is the grpc-js ServiceError. */
  CA_RPC: 'SKEIN_CA_RPC',
  /** No connection to the CA within the connect timeout. */
  CA_CONNECT: 'SKEIN_CA_CONNECT',
  /** The bearer token could not be read. */
  TOKEN: 'SKEIN_TOKEN',
  /** Bad options: CA address, root CA, TTL, headers, concurrency. */
  CONFIG: 'SKEIN_IDENTITY_CONFIG',
  /** The built-in CA could not load, create or sign. */
  LOCAL_CA: 'SKEIN_LOCAL_CA',
  /** The identity was forgotten while a caller waited for it. */
  FORGOTTEN: 'SKEIN_FORGOTTEN',
  /** The SecretManager or CaClient was closed. */
  CLOSED: 'SKEIN_IDENTITY_CLOSED',
} as const);
export type IdentityErrorCode = (typeof IdentityErrorCode)[keyof typeof IdentityErrorCode];

export function identityError(code: IdentityErrorCode, message: string, cause?: unknown): IdentityError {
  const err = new IdentityError(message, code);
  if (cause !== undefined) err.cause = cause;
  return err;
}
