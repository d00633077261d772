// SPDX-License-Identifier: Apache-2.0
// istiod's configuration as the Istio installer renders it: `istioctl
// manifest generate --set profile=ambient` (offline, no cluster), of which
// the lab applies the two ConfigMaps istiod reads: `istio` (mesh config) and
// `istio-sidecar-injector` (injection templates, the waypoint's among them).
import { execFile } from 'node:child_process';
import { parseAllDocuments, stringify } from 'yaml';
import { bin } from './binaries.ts';
import type { KubeObj } from './kube.ts';

const WANTED = new Set(['istio', 'istio-sidecar-injector']);

export function renderIstioConfigMaps(): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(bin('istioctl'), ['manifest', 'generate', '--set', 'profile=ambient'], { timeout: 120_000, maxBuffer: 64 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err !== null) {
        reject(new Error(`istioctl manifest generate: ${stderr.trim() || err.message}`));
        return;
      }
      const docs = parseAllDocuments(stdout).map((d) => d.toJSON() as KubeObj | null).filter((d): d is KubeObj => d?.kind === 'ConfigMap' && WANTED.has(d.metadata.name));
      if (docs.length !== WANTED.size) {
        reject(new Error(`istioctl manifest generate rendered ${docs.map((d) => d.metadata.name).join(', ') || 'none'} of the ConfigMaps ${[...WANTED].join(', ')}`));
        return;
      }
      resolve(docs.map((d) => `---\n${stringify(d)}`).join(''));
    });
  });
}
