// SPDX-License-Identifier: Apache-2.0
// For tests: a plugged-in-CA style PKI (root -> intermediate -> workload
// leaves) and its CRLs, all made by the openssl CLI (`openssl ca -revoke`,
// `-gencrl`) as an operator makes the ca-crl.pem istiod publishes, so the
// CRLs Skein reads are not of its own making.
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { WorkloadCertificate } from './certificate.ts';
import { spiffeUri } from './spiffe.ts';
import type { Identity } from './spiffe.ts';

export type CaName = 'root' | 'intermediate';

export interface Pki {
  readonly dir: string;
  /** PEM of each CA certificate. */
  readonly pem: Record<CaName, string>;
  /**
   * A workload certificate under the intermediate (chain leaf, intermediate;
   * root trusted), or under a second intermediate of the same root (`other`:
   * another cluster's, in a multi-cluster mesh).
   */
  issue(id: Identity, via?: 'intermediate' | 'other'): WorkloadCertificate;
  /** Records the certificate (a leaf's PEM, or `intermediate`) as revoked by `by`, for `reason` (openssl ca -crl_reason). */
  revoke(by: CaName, cert: string, reason?: string): void;
  /** `victim`'s intermediate (its name and key) signed by this PKI's root instead: a decoy a peer could send. */
  decoy(victim: Pki): string;
  /** The CA's CRL now, PEM (`openssl ca -gencrl`). */
  crl(by: CaName): Buffer;
  close(): void;
}

function openssl(args: string[], cwd: string): string {
  return execFileSync('openssl', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

const CA_EXT = 'basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n';

/** `label` goes into the CAs' names: two PKIs with the same label have the same names (and other keys). */
export function makePki(label = ''): Pki {
  const dir = mkdtempSync(path.join(tmpdir(), 'skein-crl-'));
  const f = (name: string): string => path.join(dir, name);
  const key = (name: string): void => { openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', f(`${name}.key`)], dir); };
  for (const ca of ['root', 'intermediate'] as const) {
    writeFileSync(f(`${ca}.index`), '');
    writeFileSync(f(`${ca}.crlnumber`), '01\n');
    writeFileSync(f(`${ca}.cnf`), [
      '[ca]', 'default_ca = d', '[d]', `database = ${f(`${ca}.index`)}`, `crlnumber = ${f(`${ca}.crlnumber`)}`,
      'default_md = sha256', 'default_crl_days = 1', 'crl_extensions = crl_ext', '[crl_ext]', 'authorityKeyIdentifier=keyid:always', '',
    ].join('\n'));
  }
  writeFileSync(f('ca.ext'), CA_EXT);
  key('root');
  openssl(['req', '-new', '-x509', '-key', f('root.key'), '-subj', `/O=cluster.local/CN=Plugged Root CA${label}`, '-days', '2', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', f('root.pem')], dir);
  key('intermediate');
  openssl(['req', '-new', '-key', f('intermediate.key'), '-subj', `/O=cluster.local/CN=Plugged Intermediate CA${label}`, '-out', f('intermediate.csr')], dir);
  openssl(['x509', '-req', '-in', f('intermediate.csr'), '-CA', f('root.pem'), '-CAkey', f('root.key'), '-set_serial', '0x1001', '-days', '2', '-extfile', f('ca.ext'), '-out', f('intermediate.pem')], dir);
  const pem = { root: readFileSync(f('root.pem'), 'utf8'), intermediate: readFileSync(f('intermediate.pem'), 'utf8') };
  let serial = 0x2000;
  let other: string | undefined;
  const otherPem = (): string => {
    if (other !== undefined) return other;
    key('other');
    openssl(['req', '-new', '-key', f('other.key'), '-subj', `/O=cluster.local/CN=Plugged Intermediate CA${label} (other cluster)`, '-out', f('other.csr')], dir);
    openssl(['x509', '-req', '-in', f('other.csr'), '-CA', f('root.pem'), '-CAkey', f('root.key'), '-set_serial', '0x1002', '-days', '2', '-extfile', f('ca.ext'), '-out', f('other.pem')], dir);
    other = readFileSync(f('other.pem'), 'utf8');
    return other;
  };
  return {
    dir,
    pem,
    issue(id, via = 'intermediate') {
      const caPem = via === 'other' ? otherPem() : pem.intermediate;
      const n = ++serial;
      key(`leaf-${n}`);
      writeFileSync(f(`leaf-${n}.ext`), `keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=critical,URI:${spiffeUri(id)}\n`);
      openssl(['req', '-new', '-key', f(`leaf-${n}.key`), '-subj', '/', '-out', f(`leaf-${n}.csr`)], dir);
      openssl(['x509', '-req', '-in', f(`leaf-${n}.csr`), '-CA', f(`${via}.pem`), '-CAkey', f(`${via}.key`), '-set_serial', `0x${n.toString(16)}`, '-days', '1', '-extfile', f(`leaf-${n}.ext`), '-out', f(`leaf-${n}.pem`)], dir);
      return WorkloadCertificate.fromCertChain(id, [readFileSync(f(`leaf-${n}.pem`), 'utf8'), caPem, pem.root], readFileSync(f(`leaf-${n}.key`), 'utf8'));
    },
    revoke(by, cert, reason) {
      writeFileSync(f('revoke.pem'), cert === 'intermediate' ? pem.intermediate : cert);
      openssl(['ca', '-config', f(`${by}.cnf`), '-keyfile', f(`${by}.key`), '-cert', f(`${by}.pem`), '-revoke', f('revoke.pem'), ...(reason === undefined ? [] : ['-crl_reason', reason])], dir);
    },
    decoy(victim) {
      const out = f(`decoy-${++serial}.pem`);
      openssl(['x509', '-req', '-in', path.join(victim.dir, 'intermediate.csr'), '-CA', f('root.pem'), '-CAkey', f('root.key'), '-set_serial', `0x${serial.toString(16)}`, '-days', '2', '-extfile', f('ca.ext'), '-out', out], dir);
      return readFileSync(out, 'utf8');
    },
    crl(by) {
      openssl(['ca', '-config', f(`${by}.cnf`), '-keyfile', f(`${by}.key`), '-cert', f(`${by}.pem`), '-gencrl', '-out', f(`${by}.crl`)], dir);
      return readFileSync(f(`${by}.crl`));
    },
    close() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A certificate's chain as a handshake hands it over: DER, leaf, intermediate, root. */
export function chainOf(cert: WorkloadCertificate): Buffer[] {
  return [...cert.chainPems, ...cert.rootPems].map((pem) => new X509Certificate(pem).raw);
}
