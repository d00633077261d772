// SPDX-License-Identifier: Apache-2.0
// A test double of the Kubernetes API server, as `skein waypoint` and
// @kubernetes/client-node see it: real HTTPS on 127.0.0.1 (a server
// certificate from the test CA, whose root goes into the kubeconfig as
// certificate-authority-data), the real REST paths
// (discovery under /api and /apis, namespaced and cluster-scoped items,
// all-namespace lists), the real JSON shapes (APIResourceList, <Kind>List,
// Status), bearer-token auth, and server-side apply by
// `application/apply-patch+yaml` with a required fieldManager. Objects live in
// memory. Apply merges maps and replaces lists without field-ownership
// conflict checks. Every request is recorded. A fixture, never the product.
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import type http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { TestCa } from '../istiod/test-ca.ts';

export interface ResourceType {
  group: string;
  version: string;
  kind: string;
  plural: string;
  singular: string;
  namespaced: boolean;
}

/** The kinds the double serves; discovery lists exactly these. */
export const RESOURCE_TYPES: readonly ResourceType[] = [
  { group: '', version: 'v1', kind: 'Namespace', plural: 'namespaces', singular: 'namespace', namespaced: false },
  { group: 'gateway.networking.k8s.io', version: 'v1', kind: 'Gateway', plural: 'gateways', singular: 'gateway', namespaced: true },
  { group: 'networking.istio.io', version: 'v1alpha3', kind: 'EnvoyFilter', plural: 'envoyfilters', singular: 'envoyfilter', namespaced: true },
];

export interface RecordedRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  query: Record<string, string>;
  contentType: string | undefined;
  authorization: string | undefined;
  /** The parsed body of a write, when there was one. */
  body: unknown;
  status: number;
}

export type KubeObj = Record<string, unknown> & { apiVersion: string; kind: string; metadata: Record<string, unknown> & { name: string; namespace?: string } };

export interface KubeApiServerDoubleOptions {
  /** The only bearer token accepted. */
  token: string;
  /** Namespaces that exist from the start ("default" always does). */
  namespaces?: string[];
}

const APPLY_PATCH = 'application/apply-patch+yaml';

export class KubeApiServerDouble {
  readonly requests: RecordedRequest[] = [];
  readonly #objects = new Map<string, KubeObj>();
  readonly #token: string;
  #server: https.Server | undefined;
  #caPem = '';
  #resourceVersion = 1;

  constructor(opts: KubeApiServerDoubleOptions) {
    this.#token = opts.token;
    for (const ns of ['default', ...(opts.namespaces ?? [])]) this.seed({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  }

  async start(): Promise<void> {
    const ca = await TestCa.create('O=Skein test,CN=kube-apiserver double CA');
    const { certPem, keyPem } = await ca.issueServerCert(['kubernetes.default.svc', 'localhost']);
    this.#caPem = ca.rootPem;
    const server = https.createServer({ cert: certPem, key: keyPem }, (req, res) => { this.#handle(req, res); });
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
  }

  /** The root that signed the server's certificate. */
  get caPem(): string {
    return this.#caPem;
  }

  get url(): string {
    return `https://127.0.0.1:${(this.#server?.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    if (server === undefined) return;
    this.#server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => { resolve(); }));
  }

  /** Writes a kubeconfig for this server with the accepted token. */
  writeKubeconfig(file: string, opts: { namespace?: string; token?: string } = {}): void {
    const context: Record<string, string> = { cluster: 'double', user: 'tester' };
    if (opts.namespace !== undefined) context.namespace = opts.namespace;
    writeFileSync(file, toYaml({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'double', cluster: { server: this.url, 'certificate-authority-data': Buffer.from(this.#caPem).toString('base64') } }],
      users: [{ name: 'tester', user: { token: opts.token ?? this.#token } }],
      contexts: [{ name: 'double', context }],
      'current-context': 'double',
    }));
  }

  /** Stores an object as is (status included), as if another client had made it. */
  seed(obj: KubeObj): void {
    const type = typeOf(obj.apiVersion, obj.kind);
    if (type === undefined) throw new Error(`the double does not serve ${obj.apiVersion} ${obj.kind}`);
    const stored = structuredClone(obj);
    stored.metadata.uid ??= randomUUID();
    stored.metadata.resourceVersion = String(this.#resourceVersion++);
    this.#objects.set(key(type, stored.metadata.namespace, stored.metadata.name), stored);
  }

  get(apiVersion: string, kind: string, namespace: string | undefined, name: string): KubeObj | undefined {
    const type = typeOf(apiVersion, kind);
    if (type === undefined) return undefined;
    const obj = this.#objects.get(key(type, type.namespaced ? namespace : undefined, name));
    return obj === undefined ? undefined : structuredClone(obj);
  }

  /** Requests that could change state (anything but GET). */
  writes(): RecordedRequest[] {
    return this.requests.filter((r) => r.method !== 'GET');
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const raw = Buffer.concat(chunks).toString('utf8');
      const rec: RecordedRequest = {
        method: req.method ?? '',
        path: url.pathname,
        query: Object.fromEntries(url.searchParams),
        contentType: req.headers['content-type'],
        authorization: req.headers.authorization,
        body: undefined,
        status: 0,
      };
      this.requests.push(rec);
      let reply: Reply;
      try {
        rec.body = raw === '' ? undefined : parseYaml(raw) as unknown;
        reply = this.#route(rec);
      } catch (err) {
        reply = failure(400, 'BadRequest', `cannot parse the request body: ${(err as Error).message}`);
      }
      rec.status = reply.status;
      res.writeHead(reply.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(reply.body));
    });
  }

  #route(req: RecordedRequest): Reply {
    if (req.authorization !== `Bearer ${this.#token}`) return failure(401, 'Unauthorized', 'Unauthorized');
    const parts = req.path.split('/').filter((p) => p !== '').map(decodeURIComponent);
    // Discovery, what KubernetesObjectApi reads to map a kind to its resource.
    if (req.method === 'GET') {
      if (parts.length === 1 && parts[0] === 'api') return ok({ kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [] });
      if (parts.length === 1 && parts[0] === 'apis') return ok(groupList());
      if (parts.length === 2 && parts[0] === 'api' && parts[1] === 'v1') return ok(resourceList('', 'v1'));
      if (parts.length === 3 && parts[0] === 'apis') {
        const list = resourceList(parts[1] ?? '', parts[2] ?? '');
        return list.resources.length === 0 ? failure(404, 'NotFound', 'the server could not find the requested resource') : ok(list);
      }
    }
    const [group, version, rest] = parts[0] === 'api' ? ['', parts[1] ?? '', parts.slice(2)] : [parts[1] ?? '', parts[2] ?? '', parts.slice(3)];
    if (parts[0] !== 'api' && parts[0] !== 'apis') return failure(404, 'NotFound', 'the server could not find the requested resource');
    let namespace: string | undefined;
    let plural: string | undefined;
    let name: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3) [, namespace, plural, name] = rest;
    else [plural, name] = rest;
    const type = RESOURCE_TYPES.find((t) => t.group === group && t.version === version && t.plural === plural);
    if (type === undefined || rest.length > 4 || (namespace !== undefined && !type.namespaced)) {
      return failure(404, 'NotFound', 'the server could not find the requested resource');
    }
    if (name === undefined) {
      if (req.method !== 'GET') return failure(405, 'MethodNotAllowed', `${req.method} is not supported on a collection by the double`);
      return ok(this.#list(type, namespace));
    }
    if (type.namespaced && namespace === undefined) return failure(404, 'NotFound', 'the server could not find the requested resource');
    switch (req.method) {
      case 'GET': {
        const obj = this.#objects.get(key(type, namespace, name));
        return obj === undefined ? notFound(type, name) : ok(obj);
      }
      case 'PATCH':
        return this.#apply(req, type, namespace, name);
      case 'DELETE': {
        const k = key(type, namespace, name);
        const obj = this.#objects.get(k);
        if (obj === undefined) return notFound(type, name);
        this.#objects.delete(k);
        return ok({
          kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success',
          details: { name, group: type.group, kind: type.plural, uid: obj.metadata.uid },
        });
      }
      default:
        return failure(405, 'MethodNotAllowed', `${req.method} is not supported by the double`);
    }
  }

  #list(type: ResourceType, namespace: string | undefined): Record<string, unknown> {
    const items = [...this.#objects.entries()]
      .filter(([k, o]) => k.startsWith(`${type.plural}.${type.group}/`) && (namespace === undefined || o.metadata.namespace === namespace))
      .map(([, o]) => o);
    return { apiVersion: apiVersionOf(type), kind: `${type.kind}List`, metadata: { resourceVersion: String(this.#resourceVersion) }, items };
  }

  #apply(req: RecordedRequest, type: ResourceType, namespace: string | undefined, name: string): Reply {
    if (req.contentType?.split(';')[0]?.trim() !== APPLY_PATCH) {
      return failure(415, 'UnsupportedMediaType', `the double accepts only ${APPLY_PATCH} patches, not ${req.contentType ?? 'none'}`);
    }
    const manager = req.query.fieldManager;
    if (manager === undefined || manager === '') {
      return failure(422, 'Invalid', 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch');
    }
    const body = req.body;
    if (!isObject(body) || !isObject(body.metadata)) return failure(400, 'BadRequest', 'the body is not a Kubernetes object');
    if (body.apiVersion !== apiVersionOf(type) || body.kind !== type.kind) {
      return failure(400, 'BadRequest', `the body is ${String(body.apiVersion)} ${String(body.kind)}, the URL is ${apiVersionOf(type)} ${type.kind}`);
    }
    if (body.metadata.name !== name) return failure(400, 'BadRequest', `the name of the object (${String(body.metadata.name)}) does not match the name on the URL (${name})`);
    if (type.namespaced && body.metadata.namespace !== undefined && body.metadata.namespace !== namespace) {
      return failure(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request');
    }
    if (namespace !== undefined && !this.#objects.has(key(namespaceType(), undefined, namespace))) {
      return failure(404, 'NotFound', `namespaces "${namespace}" not found`);
    }
    const dryRun = req.query.dryRun === 'All';
    const k = key(type, namespace, name);
    const now = this.#objects.get(k);
    const at = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const entry = { manager, operation: 'Apply', apiVersion: apiVersionOf(type), time: at, fieldsType: 'FieldsV1', fieldsV1: {} };
    let stored: KubeObj;
    if (now === undefined) {
      stored = structuredClone(body) as KubeObj;
      if (type.namespaced) stored.metadata.namespace = namespace;
      Object.assign(stored.metadata, { uid: randomUUID(), creationTimestamp: at, generation: 1, managedFields: [entry] });
    } else {
      stored = merge(now, body) as KubeObj;
      const managers = (now.metadata.managedFields as { manager: string }[] | undefined) ?? [];
      stored.metadata.managedFields = [...managers.filter((m) => m.manager !== manager), entry];
      if (JSON.stringify(now.spec) !== JSON.stringify(stored.spec)) stored.metadata.generation = Number(now.metadata.generation ?? 1) + 1;
    }
    stored.metadata.resourceVersion = String(this.#resourceVersion + 1);
    if (!dryRun) {
      this.#resourceVersion++;
      this.#objects.set(k, stored);
    }
    return { status: now === undefined ? 201 : 200, body: stored };
  }
}

interface Reply { status: number; body: unknown }

function ok(body: unknown): Reply {
  return { status: 200, body };
}

function failure(code: number, reason: string, message: string): Reply {
  return { status: code, body: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code } };
}

function notFound(type: ResourceType, name: string): Reply {
  const r = failure(404, 'NotFound', `${type.plural}${type.group === '' ? '' : `.${type.group}`} "${name}" not found`);
  (r.body as Record<string, unknown>).details = { name, group: type.group, kind: type.plural };
  return r;
}

function apiVersionOf(t: ResourceType): string {
  return t.group === '' ? t.version : `${t.group}/${t.version}`;
}

function typeOf(apiVersion: string, kind: string): ResourceType | undefined {
  return RESOURCE_TYPES.find((t) => apiVersionOf(t) === apiVersion && t.kind === kind);
}

function namespaceType(): ResourceType {
  const t = typeOf('v1', 'Namespace');
  if (t === undefined) throw new Error('Namespace type missing');
  return t;
}

function key(type: ResourceType, namespace: string | undefined, name: string): string {
  return `${type.plural}.${type.group}/${type.namespaced ? namespace ?? '' : ''}/${name}`;
}

function groupList(): Record<string, unknown> {
  const groups = new Map<string, string[]>();
  for (const t of RESOURCE_TYPES) {
    if (t.group === '') continue;
    const versions = groups.get(t.group) ?? [];
    if (!versions.includes(t.version)) versions.push(t.version);
    groups.set(t.group, versions);
  }
  return {
    kind: 'APIGroupList',
    apiVersion: 'v1',
    groups: [...groups].map(([name, versions]) => {
      const all = versions.map((v) => ({ groupVersion: `${name}/${v}`, version: v }));
      return { name, versions: all, preferredVersion: all[0] };
    }),
  };
}

function resourceList(group: string, version: string): { kind: string; apiVersion: string; groupVersion: string; resources: Record<string, unknown>[] } {
  return {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion: group === '' ? version : `${group}/${version}`,
    resources: RESOURCE_TYPES.filter((t) => t.group === group && t.version === version).map((t) => ({
      name: t.plural,
      singularName: t.singular,
      namespaced: t.namespaced,
      kind: t.kind,
      verbs: ['delete', 'get', 'list', 'patch'],
    })),
  };
}

function isObject(v: unknown): v is Record<string, unknown> & { metadata: Record<string, unknown> } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Apply's effect on fields it names: maps merge key by key, everything else (lists too) is replaced. */
function merge(base: unknown, patch: unknown): unknown {
  if (!isObject(base) || !isObject(patch)) return structuredClone(patch);
  const out: Record<string, unknown> = structuredClone(base);
  for (const [k, v] of Object.entries(patch)) out[k] = k in out ? merge(out[k], v) : structuredClone(v);
  return out;
}
