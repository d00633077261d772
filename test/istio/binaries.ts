// SPDX-License-Identifier: Apache-2.0
// Where test/setup.sh --control-plane put the real control plane (step 7):
// the binaries in .skein/bin, the CRDs in .skein/crds.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const STATE = fileURLToPath(new URL('../../.skein/', import.meta.url));

export const BINARIES = ['etcd', 'kube-apiserver', 'pilot-discovery', 'istioctl', 'install-cni', 'istio-cni'] as const;
export type Binary = (typeof BINARIES)[number];

export const bin = (name: Binary): string => path.join(STATE, 'bin', name);
export const CRD_DIR = path.join(STATE, 'crds');

/** What is missing for the real control plane, as sentences (empty when all is there). */
export function missingBinaries(): string[] {
  const missing: string[] = BINARIES.filter((b) => !fs.existsSync(bin(b))).map((b) => `.skein/bin/${b}`);
  if (!fs.existsSync(path.join(CRD_DIR, 'istio.yaml'))) missing.push('.skein/crds/istio.yaml');
  return missing.length === 0 ? [] : [`missing ${missing.join(', ')}: run bash test/setup.sh --control-plane`];
}

/** CRD files to apply: Istio's, then the Gateway API's. */
export function crdFiles(): string[] {
  const gw = path.join(CRD_DIR, 'gateway-api');
  return [path.join(CRD_DIR, 'istio.yaml'), ...fs.readdirSync(gw).filter((f) => f.endsWith('.yaml')).sort().map((f) => path.join(gw, f))];
}

/** The module version a Go binary was built from (`go version -m`'s "mod" line), e.g. istio.io/istio@v0.0.0-2026…. */
export function moduleVersion(name: Binary): string {
  const out = execFileSync('go', ['version', '-m', bin(name)], { encoding: 'utf8', timeout: 10_000, env: { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/local/go/bin` } });
  const mod = /^\s+mod\s+(\S+)\s+(\S+)/m.exec(out);
  const dep = (m: string): string | undefined => new RegExp(`^\\s+dep\\s+${m.replace(/\./g, '\\.')}\\s+(\\S+)`, 'm').exec(out)?.[1];
  // kube-apiserver is built in a throwaway module: its version is the dependency's.
  if (mod !== null && mod[1]?.startsWith('skein.local/') === true) return `k8s.io/kubernetes@${dep('k8s.io/kubernetes') ?? 'unknown'}`;
  return mod === null ? 'unknown' : `${mod[1] ?? ''}@${mod[2] ?? ''}`;
}
