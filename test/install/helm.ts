// SPDX-License-Identifier: Apache-2.0
// Runs the helm that setup builds (.skein/bin/helm) and parses what it
// renders into plain objects, for the chart and overlay tests.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
export const helmBin = `${repoRoot}.skein/bin/helm`;
export const chartDir = `${repoRoot}charts/skein`;
/** Istio's install files that setup copies from the istio.io/istio module. */
export const istioDir = `${repoRoot}.skein/istio`;

export interface HelmResult { code: number; stdout: string; stderr: string }

/** Runs helm; a non-zero exit is a result, not an exception. */
export function helm(args: readonly string[]): Promise<HelmResult> {
  if (!fs.existsSync(helmBin)) throw new Error(`${helmBin} is missing; run 'npm run setup'`);
  return new Promise((resolve, reject) => {
    execFile(helmBin, args, { env: { ...process.env, HELM_CACHE_HOME: `${repoRoot}.skein/helm/cache`, HELM_CONFIG_HOME: `${repoRoot}.skein/helm/config`, HELM_DATA_HOME: `${repoRoot}.skein/helm/data` }, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err === null) { resolve({ code: 0, stdout, stderr }); return; }
      if (typeof err.code === 'number') { resolve({ code: err.code, stdout, stderr }); return; }
      reject(new Error(`cannot run ${helmBin}: ${err.message}`, { cause: err }));
    });
  });
}

// The parts of Kubernetes objects the tests look at.
export interface EnvVar { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string }; resourceFieldRef?: { resource: string; divisor?: string } } }
export interface VolumeMount { name: string; mountPath: string; readOnly?: boolean; mountPropagation?: string }
export interface Container {
  name: string;
  image: string;
  imagePullPolicy?: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  ports?: { name?: string; containerPort: number }[];
  volumeMounts?: VolumeMount[];
  readinessProbe?: { httpGet?: { path: string; port: number | string } };
  securityContext?: {
    privileged?: boolean;
    runAsUser?: number;
    readOnlyRootFilesystem?: boolean;
    capabilities?: { drop?: string[]; add?: string[] };
  };
}
export interface Volume {
  name: string;
  hostPath?: { path: string; type?: string };
  configMap?: { name: string; optional?: boolean };
  emptyDir?: Record<string, never>;
  projected?: { sources: { serviceAccountToken?: { path: string; audience?: string; expirationSeconds?: number } }[] };
}
export interface PodSpec {
  serviceAccountName?: string;
  priorityClassName?: string;
  tolerations?: Record<string, unknown>[];
  initContainers?: Container[];
  containers: Container[];
  volumes?: Volume[];
}
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: {
    selector?: { matchLabels?: Record<string, string> };
    updateStrategy?: { type?: string; rollingUpdate?: { maxSurge?: number | string; maxUnavailable?: number | string } };
    template?: { metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> }; spec: PodSpec };
  };
}

/** Every non-empty YAML document of helm's output. */
export function parseManifests(text: string): K8sObject[] {
  const out: K8sObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`bad YAML from helm: ${doc.errors.map((e) => e.message).join('; ')}`);
    const js: unknown = doc.toJS();
    if (js !== null && typeof js === 'object') out.push(js as K8sObject);
  }
  return out;
}

/** The single object of a kind (and name, if given); fails loudly otherwise. */
export function only(objs: readonly K8sObject[], kind: string, name?: string): K8sObject {
  const found = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind}${name === undefined ? '' : ` ${name}`}, found ${found.length}`);
  const [obj] = found;
  if (obj === undefined) throw new Error('unreachable');
  return obj;
}

export function podSpec(obj: K8sObject): PodSpec {
  const spec = obj.spec?.template?.spec;
  if (spec === undefined) throw new Error(`${obj.kind} ${obj.metadata.name} has no pod template`);
  return spec;
}

export function container(obj: K8sObject, name: string): Container {
  const c = podSpec(obj).containers.find((x) => x.name === name);
  if (c === undefined) throw new Error(`${obj.kind} ${obj.metadata.name} has no container ${name}`);
  return c;
}
