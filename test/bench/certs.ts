// SPDX-License-Identifier: Apache-2.0
// A throwaway CA and certificates for the TLS paths, made with the openssl
// CLI in the run directory (gone with the lab). ECDSA P-256, as Istio issues.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface TestCa {
  dir: string;
  certFile: string;
  keyFile: string;
}

function openssl(args: readonly string[]): void {
  try {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 });
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    throw new Error(`openssl ${args.join(' ')}: ${err.stderr?.toString().trim() ?? err.message}`);
  }
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-noenc'];

export function createCa(dir: string, cn = 'skein-bench-ca'): TestCa {
  fs.mkdirSync(dir, { recursive: true });
  const ca = { dir, certFile: path.join(dir, 'ca.pem'), keyFile: path.join(dir, 'ca.key') };
  openssl(['req', '-x509', ...EC, '-keyout', ca.keyFile, '-out', ca.certFile, '-days', '2', '-subj', `/CN=${cn}`]);
  return ca;
}

/**
 * Issues a certificate for `dnsName` usable both as server and as client, and
 * returns one PEM file holding certificate and key (haproxy's `crt` format).
 */
export function issueCert(ca: TestCa, dnsName: string): string {
  const base = path.join(ca.dir, dnsName);
  fs.writeFileSync(`${base}.ext`, `subjectAltName=DNS:${dnsName}\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n`);
  openssl(['req', '-new', ...EC, '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${dnsName}`]);
  openssl(['x509', '-req', '-in', `${base}.csr`, '-CA', ca.certFile, '-CAkey', ca.keyFile, '-CAcreateserial', '-days', '2', '-extfile', `${base}.ext`, '-out', `${base}.crt`]);
  const pem = `${base}.pem`;
  fs.writeFileSync(pem, fs.readFileSync(`${base}.crt`, 'utf8') + fs.readFileSync(`${base}.key`, 'utf8'), { mode: 0o600 });
  return pem;
}
