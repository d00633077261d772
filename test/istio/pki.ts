// SPDX-License-Identifier: Apache-2.0
// The Kubernetes API server's keys, made with the openssl CLI in the run
// directory (gone with the lab): a cluster CA, the apiserver's serving
// certificate, an admin client certificate (group system:masters, what
// istiod and the test act as) and the service-account signing key pair
// (what TokenRequest tokens, istio-token among them, are signed with).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface KubePki {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  adminCert: string;
  adminKey: string;
  saKey: string;
  saPub: string;
}

function openssl(args: readonly string[]): void {
  try {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 20_000 });
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    throw new Error(`openssl ${args.join(' ')}: ${err.stderr?.toString().trim() ?? err.message}`);
  }
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-noenc'];

function issue(dir: string, name: string, subject: string, ext: string): void {
  const base = path.join(dir, name);
  fs.writeFileSync(`${base}.ext`, `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n${ext}\n`);
  openssl(['req', '-new', ...EC, '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', subject]);
  openssl(['x509', '-req', '-in', `${base}.csr`, '-CA', path.join(dir, 'ca.crt'), '-CAkey', path.join(dir, 'ca.key'), '-CAcreateserial', '-days', '2', '-extfile', `${base}.ext`, '-out', `${base}.crt`]);
}

/**
 * Makes the PKI. `serverIps` and `serverNames` go into the serving
 * certificate's SANs (the address clients dial and the in-cluster names).
 */
export function createKubePki(dir: string, serverIps: readonly string[], serverNames: readonly string[]): KubePki {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  openssl(['req', '-x509', ...EC, '-keyout', path.join(dir, 'ca.key'), '-out', path.join(dir, 'ca.crt'), '-days', '2', '-subj', '/CN=skein-lab-kubernetes-ca']);
  const sans = [...serverIps.map((ip) => `IP:${ip}`), ...serverNames.map((n) => `DNS:${n}`)].join(',');
  issue(dir, 'apiserver', '/CN=kube-apiserver', `extendedKeyUsage=serverAuth\nsubjectAltName=${sans}`);
  issue(dir, 'admin', '/O=system:masters/CN=skein-lab-admin', 'extendedKeyUsage=clientAuth');
  // RSA: the apiserver signs service-account tokens with RS256 by default.
  openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', path.join(dir, 'sa.key')]);
  openssl(['pkey', '-in', path.join(dir, 'sa.key'), '-pubout', '-out', path.join(dir, 'sa.pub')]);
  return {
    dir,
    caCert: path.join(dir, 'ca.crt'),
    serverCert: path.join(dir, 'apiserver.crt'),
    serverKey: path.join(dir, 'apiserver.key'),
    adminCert: path.join(dir, 'admin.crt'),
    adminKey: path.join(dir, 'admin.key'),
    saKey: path.join(dir, 'sa.key'),
    saPub: path.join(dir, 'sa.pub'),
  };
}

/** A kubeconfig file for the admin user against `server` (what istiod and istioctl read). */
export function kubeconfigYaml(pki: KubePki, server: string): string {
  const b64 = (f: string): string => fs.readFileSync(f).toString('base64');
  return `apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster: {server: "${server}", certificate-authority-data: ${b64(pki.caCert)}}
users:
- name: admin
  user: {client-certificate-data: ${b64(pki.adminCert)}, client-key-data: ${b64(pki.adminKey)}}
contexts:
- name: lab
  context: {cluster: lab, user: admin}
current-context: lab
`;
}
