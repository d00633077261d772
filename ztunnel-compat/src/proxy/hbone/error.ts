// SPDX-License-Identifier: Apache-2.0
// The HBONE transport's one error class. `flag` follows ztunnel's response
// flags (CONNECT for a non-200 answer, TLS_FAILURE / H2_HANDSHAKE_FAILURE for a
// failed handshake); `status` is the HTTP status when the peer answered.

export const HboneErrorCode = Object.freeze({
  /** The peer answered the CONNECT with a non-200 status. */
  STATUS: 'SKEIN_HBONE_STATUS',
  /** The TCP connect to the peer failed (refused, unreachable). */
  TCP: 'SKEIN_HBONE_TCP',
  /** The TLS handshake failed (version, ciphers, chain, alert). */
  TLS: 'SKEIN_HBONE_TLS',
  /** The peer's SPIFFE identity is not acceptable (not expected, wrong trust domain, none). */
  IDENTITY: 'SKEIN_HBONE_IDENTITY',
  /** ALPN did not select h2. */
  ALPN: 'SKEIN_HBONE_ALPN',
  /** The HTTP/2 session could not be set up (no SETTINGS, closed, timed out). */
  H2_HANDSHAKE: 'SKEIN_HBONE_H2_HANDSHAKE',
  /** The stream failed before a response arrived. */
  STREAM: 'SKEIN_HBONE_STREAM',
  /** Our own certificate has expired; it is never presented (fail closed). */
  CERT_EXPIRED: 'SKEIN_HBONE_CERT_EXPIRED',
  /** A CRL (CRL_PATH) revokes a certificate of the peer's chain. */
  REVOKED: 'SKEIN_HBONE_CERT_REVOKED',
  /** The pool or server was closed. */
  CLOSED: 'SKEIN_HBONE_CLOSED',
} as const);
export type HboneErrorCode = (typeof HboneErrorCode)[keyof typeof HboneErrorCode];

export type HboneFlag = 'CONNECT' | 'TLS_FAILURE' | 'H2_HANDSHAKE_FAILURE';

const kBrand = Symbol.for('skein.hbone.error');

export class HboneError extends Error {
  override name = 'HboneError';
  readonly code: HboneErrorCode;
  readonly flag: HboneFlag;
  /** The HTTP status of the CONNECT answer, when there was one. */
  readonly status: number | undefined;
  readonly [kBrand] = true;

  constructor(code: HboneErrorCode, flag: HboneFlag, message: string, opts: { status?: number; cause?: unknown } = {}) {
    super(message);
    this.code = code;
    this.flag = flag;
    this.status = opts.status;
    if (opts.cause !== undefined) this.cause = opts.cause;
  }

  static override [Symbol.hasInstance](v: unknown): boolean {
    return typeof v === 'object' && v !== null && (v as Record<symbol, unknown>)[kBrand] === true;
  }
}
