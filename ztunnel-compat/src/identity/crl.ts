// SPDX-License-Identifier: Apache-2.0
// Certificate revocation lists (ztunnel CRL_PATH, src/tls/crl.rs and
// revocation.rs): which peer chains a CRL file revokes. The judgement is
// webpki's as ztunnel configures it: every certificate of the chain below
// the trust anchor is looked up in the CRLs its issuer signed; a CRL whose
// signature does not verify under that issuer's key (or whose issuer may not
// sign CRLs) fails the chain; an issuer with no CRL is no revocation
// (UnknownStatusPolicy::Allow), and a CRL past its nextUpdate still counts
// (ExpirationPolicy::Ignore). Pure: the file and its reloads are crl-file.ts.
import { verify as verifySignature, X509Certificate as NodeX509 } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { x509 } from './x509.ts';

export class CrlError extends Error {
  override name = 'CrlError';
  readonly code = 'SKEIN_CRL';
}

interface Crl {
  /** Its issuer Name, DER, hex: matched byte for byte against a certificate's issuer, as webpki does. */
  readonly issuer: string;
  readonly issuerText: string;
  readonly serials: ReadonlySet<string>;
  readonly tbs: Buffer;
  readonly signature: Buffer;
  /** node:crypto's digest for the signature algorithm; null for Ed25519; undefined when unsupported. */
  readonly digest: string | null | undefined;
}

/** node:crypto.verify's digest for a CRL's signature algorithm (WebCrypto form); null for Ed25519, undefined when unsupported. */
function digestOf(alg: { name?: unknown; hash?: { name?: unknown } }): string | null | undefined {
  if (alg.name === 'Ed25519') return null;
  if (alg.name !== 'ECDSA' && alg.name !== 'RSASSA-PKCS1-v1_5') return undefined;
  const hash = alg.hash?.name;
  return hash === 'SHA-256' || hash === 'SHA-384' || hash === 'SHA-512' ? hash.replace('-', '').toLowerCase() : undefined;
}

/** One DER element at `at`: its tag, where its content starts and where it ends. */
function tlv(der: Buffer, at: number): { tag: number; start: number; end: number } {
  const tag = der[at];
  const first = der[at + 1];
  if (tag === undefined || first === undefined) throw new Error('truncated DER');
  let start = at + 2;
  let len = first;
  if (first >= 0x80) {
    const n = first & 0x7f;
    if (n === 0 || n > 4 || start + n > der.length) throw new Error('bad DER length');
    len = der.readUIntBE(start, n);
    start += n;
  }
  if (start + len > der.length) throw new Error('truncated DER');
  return { tag, start, end: start + len };
}

/**
 * The signed part of a certificate or CRL (its first element) and that
 * part's fields as raw DER, in order: read straight from the bytes, so names
 * compare byte for byte (as webpki does) and a handshake parses nothing more.
 */
function signedPart(der: Buffer): { tbs: Buffer; fields: Buffer[] } {
  const outer = tlv(der, 0);
  const tbs = tlv(der, outer.start);
  const fields: Buffer[] = [];
  for (let at = tbs.start; at < tbs.end;) {
    const f = tlv(der, at);
    fields.push(der.subarray(at, f.end));
    at = f.end;
  }
  return { tbs: der.subarray(outer.start, tbs.end), fields };
}

/** A certificate's issuer Name (DER, hex) and serial (serialKey). */
function certFacts(der: Buffer): { issuer: string; serial: string } {
  const { fields } = signedPart(der);
  // TBSCertificate: [0] version (optional), serialNumber, signature, issuer, ...
  const i = fields[0]?.[0] === 0xa0 ? 1 : 0;
  const serial = fields[i];
  const issuer = fields[i + 2];
  if (serial === undefined || issuer === undefined) throw new Error('a certificate without serial or issuer');
  const s = tlv(serial, 0);
  return { issuer: issuer.toString('hex'), serial: serialKey(serial.subarray(s.start, s.end).toString('hex')) };
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/** A serial as the DER INTEGER's value, without leading zero bytes, lower case. */
function serialKey(hex: string): string {
  return hex.toLowerCase().replace(/^(00)+(?=.)/, '');
}

/** The CRLs of one file, and the check of a peer's chain against them. */
export class CrlSet {
  static readonly EMPTY = new CrlSet([], []);

  /** Each CRL, DER, as the native engine takes them (it checks its own handshakes). */
  readonly ders: readonly Buffer[];
  readonly #crls: readonly Crl[];
  /** `<crl index>|<issuer fingerprint>` -> why that CRL cannot be trusted ('' when it can). */
  readonly #verified = new Map<string, string>();

  private constructor(crls: Crl[], ders: Buffer[]) {
    this.#crls = crls;
    this.ders = ders;
  }

  /**
   * A CRL file's contents: one DER CRL, or PEM with any number of CRL
   * blocks; empty (or PEM with no block) revokes nothing. Throws CrlError
   * naming the first block that does not parse.
   */
  static parse(data: Buffer): CrlSet {
    const text = data.toString('latin1');
    if (text.trim() === '') return CrlSet.EMPTY;
    const ders: Buffer[] = [];
    if (text.trimStart().startsWith('-----BEGIN')) {
      for (const m of text.matchAll(PEM_BLOCK)) ders.push(Buffer.from((m[2] ?? '').replace(/\s+/g, ''), 'base64'));
      // A block cut short (a file caught half written) is an error, never fewer revocations.
      const begun = text.split('-----BEGIN ').length - 1;
      if (begun !== ders.length) throw new CrlError(`${begun - ders.length} of ${begun} PEM blocks have no END line`);
    } else {
      ders.push(data);
    }
    return new CrlSet(ders.map((der, i) => {
      try {
        return toCrl(der);
      } catch (err) {
        throw new CrlError(`CRL ${i + 1} of ${ders.length} does not parse: ${(err as Error).message}`, { cause: err });
      }
    }), ders);
  }

  /** CRLs in the set. */
  get size(): number {
    return this.#crls.length;
  }

  /** Certificates revoked, over all CRLs. */
  get revoked(): number {
    return this.#crls.reduce((n, c) => n + c.serials.size, 0);
  }

  /**
   * Why a peer chain must be refused, if it must: `chain` is DER, leaf
   * first, each certificate followed by its issuer, up to the trust anchor
   * (anchoredChain), which is not itself looked up.
   */
  check(chain: readonly Buffer[]): string | undefined {
    if (this.#crls.length === 0) return undefined;
    for (let i = 0; i + 1 < chain.length; i++) {
      const der = chain[i] as Buffer;
      const { issuer, serial } = certFacts(der);
      for (const [n, crl] of this.#crls.entries()) {
        if (crl.issuer !== issuer) continue;
        const untrusted = this.#trust(n, crl, chain[i + 1] as Buffer);
        if (untrusted !== '') return untrusted;
        if (crl.serials.has(serial)) {
          return `certificate ${serial} (${i === 0 ? 'the peer' : `CA ${new NodeX509(der).subject.replaceAll('\n', ', ')}`}) is revoked by the CRL of ${crl.issuerText}`;
        }
      }
    }
    return undefined;
  }

  #trust(n: number, crl: Crl, issuerDer: Buffer): string {
    const key = `${n}|${issuerDer.toString('base64')}`;
    let why = this.#verified.get(key);
    if (why === undefined) {
      why = crlUntrusted(crl, issuerDer, new NodeX509(issuerDer).publicKey);
      this.#verified.set(key, why);
    }
    return why;
  }
}

/**
 * The peer's chain to check for revocation, rebuilt from links that verify:
 * from `leaf` through `candidates` (what the handshake handed over, and CA
 * certificates we hold) to one of `anchors` (our roots, byte for byte). Each
 * issuer must have issued the one below it (name and signature) and be
 * valid `now`, as OpenSSL chooses when it verifies. Node's own chain cannot
 * be used as it is: it links by name and key id only, so a peer could slip
 * an unused decoy in where the real (revoked) intermediate sits; and a TLS
 * server gets the client's leaf alone. Undefined when no such chain is
 * found: the chain's revocation cannot be known, and the caller refuses it.
 */
export function anchoredChain(leaf: Buffer, candidates: readonly Buffer[], anchors: readonly Buffer[], now: Date = new Date()): Buffer[] | undefined {
  const cas = [...candidates.filter((c) => !c.equals(leaf)), ...anchors];
  const up = (chain: Buffer[]): Buffer[] | undefined => {
    const last = chain[chain.length - 1] as Buffer;
    if (anchors.some((a) => a.equals(last))) return chain;
    if (chain.length > 8) return undefined;
    for (const ca of cas) {
      if (chain.some((c) => c.equals(ca)) || !issued(last, ca, now)) continue;
      const found = up([...chain, ca]);
      if (found !== undefined) return found;
    }
    return undefined;
  };
  return up([leaf]);
}

// Parsed certificates and verified links, kept across handshakes (the CAs
// recur; a pooled peer's leaf recurs at each reload's re-check). Bounded:
// emptied when full.
const CACHE_MAX = 1024;
const parsed = new Map<string, NodeX509>();
const links = new Map<string, boolean>();

function parse(der: Buffer): NodeX509 {
  const key = der.toString('base64');
  let cert = parsed.get(key);
  if (cert === undefined) {
    if (parsed.size >= CACHE_MAX) parsed.clear();
    cert = new NodeX509(der);
    parsed.set(key, cert);
  }
  return cert;
}

/** Whether `parent` issued `child` (names and signature) and is valid `now`. */
function issued(child: Buffer, parent: Buffer, now: Date): boolean {
  const p = parse(parent);
  if (!(p.validFromDate <= now && now <= p.validToDate)) return false;
  const key = `${child.toString('base64')}|${parent.toString('base64')}`;
  let ok = links.get(key);
  if (ok === undefined) {
    const c = parse(child);
    ok = c.checkIssued(p) && c.verify(p.publicKey);
    if (links.size >= CACHE_MAX) links.clear();
    links.set(key, ok);
  }
  return ok;
}

function toCrl(der: Buffer): Crl {
  const crl = new x509.X509Crl(der);
  const { tbs, fields } = signedPart(der);
  // TBSCertList: version (optional INTEGER), signature, issuer, ...
  const issuer = fields[fields[0]?.[0] === 0x02 ? 2 : 1];
  if (issuer === undefined) throw new Error('a CRL without an issuer');
  return {
    issuer: issuer.toString('hex'),
    issuerText: crl.issuer,
    // removeFromCRL (a delta CRL's un-revocation) revokes nothing, as OpenSSL reads it.
    serials: new Set(crl.entries.filter((e) => e.reason !== x509.X509CrlReason.removeFromCRL).map((e) => serialKey(e.serialNumber))),
    tbs,
    signature: Buffer.from(crl.signature),
    digest: digestOf(crl.signatureAlgorithm),
  };
}

/** '' when the issuer signed the CRL and may sign CRLs; else why not. */
function crlUntrusted(crl: Crl, issuerDer: Buffer, publicKey: KeyObject): string {
  const usage = new x509.X509Certificate(issuerDer).getExtension(x509.KeyUsagesExtension);
  if (usage !== null && (usage.usages & x509.KeyUsageFlags.cRLSign) === 0) {
    return `the CRL of ${crl.issuerText} is signed by a CA that may not sign CRLs (no cRLSign key usage)`;
  }
  if (crl.digest === undefined) return `the CRL of ${crl.issuerText} uses a signature algorithm Skein does not verify`;
  let ok = false;
  try {
    ok = verifySignature(crl.digest, crl.tbs, publicKey, crl.signature);
  } catch {
    ok = false;
  }
  return ok ? '' : `the CRL of ${crl.issuerText} does not verify under its issuer's key`;
}
