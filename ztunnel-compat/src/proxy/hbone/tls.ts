// SPDX-License-Identifier: Apache-2.0
// HBONE mTLS as ztunnel configures rustls (src/tls/*): TLS 1.3 with the two
// AES-GCM suites only, ALPN h2, a mandatory client certificate, no SNI, no
// session resumption, and SPIFFE URI SAN checks instead of hostname checks:
// inbound the client must share the server's trust domain, outbound the
// server must be one of the expected identities. With CRLs (CRL_PATH), a
// verified chain is then checked against them too.
import { X509Certificate } from 'node:crypto';
import type { ConnectionOptions, DetailedPeerCertificate, PeerCertificate, TLSSocket, TlsOptions } from 'node:tls';
import { parseSpiffe, sameIdentity, spiffeUri } from '../../identity/spiffe.ts';
import type { Identity } from '../../identity/spiffe.ts';
import type { WorkloadCertificate } from '../../identity/certificate.ts';
import { anchoredChain } from '../../identity/crl.ts';
import { keyExchangeOptions } from '../../identity/key-exchange.ts';
import { HboneError, HboneErrorCode } from './error.ts';

/** TLS 1.3 suites, ztunnel's order; there is no ChaCha20. */
export const TLS13_CIPHERSUITES = 'TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256';
/** The ECDHE AES-GCM suites ztunnel allows when TLS12_ENABLED=true. */
export const TLS12_CIPHERS = 'ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256';
export const ALPN_H2 = 'h2';

export interface HboneTlsOptions {
  /** Also allow TLS 1.2 (ztunnel TLS12_ENABLED). Default false: TLS 1.3 only. */
  tls12?: boolean;
  /** COMPLIANCE_POLICY=pqc: the X25519MLKEM768 key exchange only. */
  pqc?: boolean;
  /** CRL checks of peer chains (CRL_PATH); none without. */
  revocation?: Revocation;
}

/** Which side checks: the client checks the server (`source`), the server the client (`destination`). */
export type Reporter = 'source' | 'destination';

/**
 * A peer's chain for CRL checks, built only when there are CRLs (DER, leaf
 * first, up to our root; identity/crl.ts anchoredChain), or undefined when
 * no verified chain leads to a root we trust.
 */
export type ChainOf = () => readonly Buffer[] | undefined;

/** The CRLs in force, as the HBONE client and server consult them (identity/crl-file.ts behind it). */
export interface Revocation {
  /** Why the peer's chain must be refused, if it must (an unanchored chain is, while there are CRLs). */
  check(chain: ChainOf, reporter: Reporter): string | undefined;
  /** Calls `fn` after each CRL reload, to re-check open connections; returns the unsubscribe. */
  onChange(fn: () => void): () => void;
}

/** The peer chain, for re-checks at each reload: rebuilt once, when first asked for. */
function chainOf(peer: DetailedPeerCertificate, cert: WorkloadCertificate): ChainOf {
  const presented = presentedChain(peer);
  let built: { chain: Buffer[] | undefined } | undefined;
  return () => {
    built ??= { chain: presented[0] === undefined ? undefined : anchoredChain(presented[0], [...presented.slice(1), ...heldCas(cert)], rootCas(cert)) };
    return built.chain;
  };
}

const ders = new WeakMap<WorkloadCertificate, { held: Buffer[]; roots: Buffer[] }>();
function derOf(cert: WorkloadCertificate): { held: Buffer[]; roots: Buffer[] } {
  let d = ders.get(cert);
  if (d === undefined) {
    d = { held: cert.chainPems.slice(1).map((pem) => new X509Certificate(pem).raw), roots: cert.rootPems.map((pem) => new X509Certificate(pem).raw) };
    ders.set(cert, d);
  }
  return d;
}
/** Our own intermediates: where a server finds a client's issuers, as Node gives a server the client's leaf alone. */
const heldCas = (cert: WorkloadCertificate): Buffer[] => derOf(cert).held;
const rootCas = (cert: WorkloadCertificate): Buffer[] => derOf(cert).roots;

/** What a handshake handed over, DER, leaf first, as Node links it (by name and key id: unverified). */
export function presentedChain(peer: DetailedPeerCertificate): Buffer[] {
  // Node's types promise an issuer always; a server gets none, and an anchor links to itself.
  interface Link { raw?: Buffer; issuerCertificate?: Link }
  const out: Buffer[] = [];
  const seen = new Set<Link>();
  for (let c: Link | undefined = peer; c?.raw !== undefined && !seen.has(c); c = c.issuerCertificate) {
    seen.add(c);
    out.push(c.raw);
  }
  return out;
}

/** A client session's server chain (its socket's peer), for CRL re-checks. */
export function serverChainOf(socket: TLSSocket, cert: WorkloadCertificate): ChainOf {
  return chainOf(socket.getPeerCertificate(true), cert);
}

/** The HboneError a revoked chain fails with. */
export function revokedError(side: 'client' | 'server', why: string): HboneError {
  return new HboneError(HboneErrorCode.REVOKED, 'TLS_FAILURE', `the ${side} certificate is revoked: ${why}`);
}

/** Versions, suites and key exchange: a secure context's, so also given again with each new certificate. */
function versionOptions(opts: HboneTlsOptions): Pick<TlsOptions, 'minVersion' | 'maxVersion' | 'ciphers' | 'ecdhCurve'> {
  const versions: Pick<TlsOptions, 'minVersion' | 'maxVersion' | 'ciphers'> = opts.tls12 === true
    ? { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.3', ciphers: `${TLS13_CIPHERSUITES}:${TLS12_CIPHERS}` }
    : { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', ciphers: TLS13_CIPHERSUITES };
  return { ...versions, ...keyExchangeOptions(opts.pqc) };
}

// One `URI:value` entry of X509Certificate.subjectAltName. Node JSON-quotes
// values holding commas or quotes, so an unquoted value never holds a comma.
const SAN_ENTRY = /(?:^|, )([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)/g;

/**
 * The SPIFFE identities among a certificate's URI SANs, in order. Only URIs
 * of the exact form spiffe://td/ns/X/sa/Y count; other SANs are ignored.
 */
export function spiffeIdentities(cert: X509Certificate): Identity[] {
  const out: Identity[] = [];
  for (const value of uriSans(cert)) {
    try {
      out.push(parseSpiffe(value));
    } catch {
      // Not a SPIFFE workload identity: not an identity for HBONE.
    }
  }
  return out;
}

/** A certificate's URI SANs as written, whatever they are. */
function uriSans(cert: X509Certificate): string[] {
  const text = cert.subjectAltName;
  const out: string[] = [];
  if (text === undefined) return out;
  for (const m of text.matchAll(SAN_ENTRY)) {
    if (m[1] !== 'URI') continue;
    const value = m[2] ?? '';
    if (!value.startsWith('"')) {
      out.push(value);
      continue;
    }
    try {
      out.push(JSON.parse(value) as string);
    } catch {
      // A quoted value that is not JSON: not a URI we can name.
    }
  }
  return out;
}

/** The parts of the server's TLS setup that depend on its certificate (for setSecureContext). */
export interface ServerTls {
  /** Options for tls.createServer / server.setSecureContext. */
  options: TlsOptions;
  /** The server's own trust domain: a client needs a SPIFFE SAN in it. */
  trustDomain: string;
  /**
   * The post-handshake check (ztunnel TrustDomainVerifier). Returns the peer's
   * identity, its first SPIFFE URI SAN; throws HboneError when ALPN is not h2,
   * the chain was not verified, no SPIFFE SAN is in our trust domain, or a
   * CRL revokes the chain. The
   * caller must destroy the socket on a throw (fail closed).
   */
  verifyPeer(socket: TLSSocket): Identity;
  /** The client's chain for CRL checks (at each reload). */
  peerChain(socket: TLSSocket): ChainOf;
}

/**
 * The server options that do not depend on a certificate. ALPN and the
 * client-certificate demand are the server's own, not its secure context's:
 * they must be given to tls.createServer, as setSecureContext keeps them.
 */
export function serverBaseOptions(opts: HboneTlsOptions = {}): TlsOptions {
  return { ...versionOptions(opts), ALPNProtocols: [ALPN_H2], requestCert: true, rejectUnauthorized: true };
}

export function serverContext(cert: WorkloadCertificate, opts: HboneTlsOptions = {}): ServerTls {
  const trustDomain = cert.identity.trustDomain;
  return {
    trustDomain,
    peerChain: (socket) => chainOf(socket.getPeerCertificate(true), cert),
    options: {
      key: cert.keyPem,
      cert: cert.chainPems.join(''),
      ca: [...cert.rootPems],
      ...serverBaseOptions(opts),
    },
    verifyPeer(socket: TLSSocket): Identity {
      if (socket.alpnProtocol !== ALPN_H2) {
        throw new HboneError(HboneErrorCode.ALPN, 'TLS_FAILURE', `the client did not negotiate ALPN h2 (got ${String(socket.alpnProtocol)})`);
      }
      if (!socket.authorized) {
        throw new HboneError(HboneErrorCode.TLS, 'TLS_FAILURE', `the client certificate is not trusted: ${String(socket.authorizationError)}`);
      }
      const peer = socket.getPeerX509Certificate();
      if (peer === undefined) throw new HboneError(HboneErrorCode.IDENTITY, 'TLS_FAILURE', 'the client presented no certificate');
      const ids = spiffeIdentities(peer);
      const [first] = ids;
      if (first === undefined) throw new HboneError(HboneErrorCode.IDENTITY, 'TLS_FAILURE', 'the client certificate has no SPIFFE URI SAN');
      if (!ids.some((id) => id.trustDomain === trustDomain)) {
        throw new HboneError(HboneErrorCode.IDENTITY, 'TLS_FAILURE',
          `the client identity ${ids.map(spiffeUri).join(', ')} is not in trust domain ${trustDomain}`);
      }
      const why = opts.revocation?.check(chainOf(socket.getPeerCertificate(true), cert), 'destination');
      if (why !== undefined) throw revokedError('client', why);
      return first;
    },
  };
}

/**
 * Options for tls.connect to a peer's :15008. Connect by IP (host/port or a
 * caller-made socket); these options never send SNI and never resume.
 */
export function clientOptions(cert: WorkloadCertificate, expected: readonly Identity[], opts: HboneTlsOptions = {}): ConnectionOptions {
  const want = [...expected];
  return {
    key: cert.keyPem,
    cert: cert.chainPems.join(''),
    ca: [...cert.rootPems],
    ...versionOptions(opts),
    ALPNProtocols: [ALPN_H2],
    // An empty servername is falsy: Node then sends no server_name extension.
    servername: '',
    rejectUnauthorized: true,
    // Runs only after the chain verified against our roots; replaces the
    // DNS/IP hostname check with ztunnel's identity check.
    checkServerIdentity: (_host: string, peer: PeerCertificate): Error | undefined => {
      const bad = verifyServer(peer, want);
      if (bad !== undefined || opts.revocation === undefined) return bad;
      // Node hands the detailed certificate (getPeerCertificate(true)) here.
      const why = opts.revocation.check(chainOf(peer as DetailedPeerCertificate, cert), 'source');
      return why === undefined ? undefined : revokedError('server', why);
    },
  };
}

function verifyServer(peer: PeerCertificate, expected: readonly Identity[]): Error | undefined {
  let ids: Identity[];
  let uris: string[];
  try {
    const cert = new X509Certificate(peer.raw);
    ids = spiffeIdentities(cert);
    uris = uriSans(cert);
  } catch (err) {
    return new HboneError(HboneErrorCode.IDENTITY, 'TLS_FAILURE', `the server certificate does not parse: ${(err as Error).message}`, { cause: err });
  }
  for (const id of ids) {
    for (const e of expected) if (sameIdentity(id, e)) return undefined;
  }
  // Name what it presented, identity or not: a trust domain mismatch must read as one.
  const got = uris.length === 0 ? 'no URI SAN (no SPIFFE identity)' : uris.join(', ');
  return new HboneError(HboneErrorCode.IDENTITY, 'TLS_FAILURE',
    `the server presented ${got}, expected one of ${expected.length === 0 ? '(none)' : expected.map(spiffeUri).join(', ')}`);
}
