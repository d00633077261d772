// SPDX-License-Identifier: Apache-2.0
// The lab's Kubernetes API client: @kubernetes/client-node, with every
// connection opened inside the control-plane netns (the API server listens
// only there; nothing of the lab is dialled from the root namespace).
import fs from 'node:fs';
import https from 'node:https';
import tls from 'node:tls';
import {
  ApiException, CoreV1Api, KubeConfig, KubernetesObjectApi, PatchStrategy,
} from '@kubernetes/client-node';
import { connectTcp } from '@skein/bpf';
import { parseAllDocuments } from 'yaml';
import type { KubePki } from './pki.ts';

const FIELD_MANAGER = 'skein-lab';

/** An object as the API takes it (JSON), without client-node's model classes. */
export interface KubeObj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; uid?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

/** REST resource names of the kinds applied raw (from files). */
const RAW_PLURALS: Readonly<Record<string, string>> = { CustomResourceDefinition: 'customresourcedefinitions', ConfigMap: 'configmaps' };

/** undici's connector signature (what an undici Agent's `connect` option takes). */
type Connector = (opts: { servername?: string | null }, cb: (err: Error | null, socket: tls.TLSSocket | null) => void) => void;
interface DispatcherCtor { new (o: { connect: Connector }): object }

export class LabKube {
  readonly kc: KubeConfig;
  /** A TLS connection to the API server, opened in the control-plane netns. */
  readonly #dial: () => tls.TLSSocket;
  readonly objects: KubernetesObjectApi;
  readonly core: CoreV1Api;

  constructor(pki: KubePki, address: string, port: number, netnsPath: string) {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'lab', server: `https://${address}:${port}`, caFile: pki.caCert, skipTLSVerify: false }],
      users: [{ name: 'admin', certFile: pki.adminCert, keyFile: pki.adminKey }],
      contexts: [{ name: 'lab', cluster: 'lab', user: 'admin' }],
      currentContext: 'lab',
    });
    const ca = fs.readFileSync(pki.caCert);
    const cert = fs.readFileSync(pki.adminCert);
    const key = fs.readFileSync(pki.adminKey);
    this.#dial = () => tls.connect({ socket: connectTcp({ address, port, netns: netnsPath }), host: address, ca, cert, key, ALPNProtocols: ['http/1.1'] });
    const connect: Connector = (opts, cb) => {
      // The TCP socket is made inside the control-plane netns; TLS on top as usual.
      const raw = connectTcp({ address, port, netns: netnsPath });
      // `host` is what the certificate is checked against (its IP SAN); no SNI for an IP.
      const s = tls.connect({ socket: raw, host: address, ca, cert, key, ...(opts.servername ? { servername: opts.servername } : {}), ALPNProtocols: ['http/1.1'] });
      const fail = (e: Error): void => { s.destroy(); cb(e, null); };
      s.once('error', fail);
      s.once('secureConnect', () => { s.off('error', fail); cb(null, s); });
    };
    // client-node builds an undici Agent per request context in a private
    // method; replace it with one whose connector dials in the netns. The Agent
    // class is taken from client-node's own result (undici is its dependency, not ours).
    const self = kc as unknown as { createDispatcher: (c: unknown, o: unknown) => object | undefined };
    const original = self.createDispatcher.bind(kc);
    let agent: object | undefined;
    self.createDispatcher = (c, o) => {
      if (agent === undefined) {
        const probe = original(c, o);
        if (probe === undefined) throw new Error('client-node made no dispatcher for a TLS cluster');
        agent = new (probe.constructor as DispatcherCtor)({ connect });
      }
      return agent;
    };
    this.kc = kc;
    this.objects = KubernetesObjectApi.makeApiClient(kc);
    this.core = kc.makeApiClient(CoreV1Api);
  }

  /** Server-side apply (create or update). */
  async apply(obj: KubeObj): Promise<KubeObj> {
    return this.objects.patch(obj, undefined, undefined, FIELD_MANAGER, true, PatchStrategy.ServerSideApply);
  }

  /**
   * Applies every document of a multi-document YAML file as it is. Raw
   * server-side apply, not client-node's: its model classes drop fields they
   * spell differently (a CRD schema's x-kubernetes-int-or-string).
   */
  async applyFile(file: string): Promise<number> {
    const docs = parseAllDocuments(fs.readFileSync(file, 'utf8')).map((d) => d.toJSON() as KubeObj | null);
    let n = 0;
    for (const d of docs) {
      if (d === null || typeof d.kind !== 'string') continue;
      await this.applyRaw(d);
      n++;
    }
    return n;
  }

  /** Server-side apply of one object by its REST path (core, named-group, cluster-scoped or namespaced kinds this lab uses). */
  async applyRaw(obj: KubeObj): Promise<void> {
    const plural = RAW_PLURALS[obj.kind];
    if (plural === undefined) throw new Error(`applyRaw: no REST path known for kind ${obj.kind}`);
    const base = obj.apiVersion.includes('/') ? `/apis/${obj.apiVersion}` : `/api/${obj.apiVersion}`;
    const ns = obj.metadata.namespace === undefined ? '' : `/namespaces/${obj.metadata.namespace}`;
    const p = `${base}${ns}/${plural}/${obj.metadata.name}?fieldManager=${FIELD_MANAGER}&force=true`;
    const res = await this.request('PATCH', p, JSON.stringify(obj), 'application/apply-patch+yaml');
    if (res.status >= 300) throw new Error(`apply ${obj.kind} ${obj.metadata.name}: HTTP ${res.status}: ${res.body.slice(0, 500)}`);
  }

  /** One HTTPS request to the API server (bounded: 30 s). */
  request(method: string, p: string, body?: string, contentType = 'application/json'): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = https.request({
        method, path: p, timeout: 30_000, createConnection: () => this.#dial(),
        headers: body === undefined ? {} : { 'content-type': contentType, 'content-length': Buffer.byteLength(body) },
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }); });
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${p}: timed out`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  async read(obj: KubeObj): Promise<KubeObj | undefined> {
    try {
      return await this.objects.read(obj) as unknown as KubeObj;
    } catch (e) {
      if (e instanceof ApiException && e.code === 404) return undefined;
      throw e;
    }
  }

  async delete(obj: KubeObj): Promise<void> {
    try {
      await this.objects.delete(obj);
    } catch (e) {
      if (!(e instanceof ApiException && e.code === 404)) throw e;
    }
  }

  /** Writes a pod's status, as a kubelet would once its sandbox runs (there is no kubelet here). */
  async setPodRunning(namespace: string, name: string, podIp: string, hostIp: string): Promise<void> {
    const pod = await this.core.readNamespacedPod({ name, namespace });
    const now = new Date().toISOString();
    const cond = (type: string): object => ({ type, status: 'True', lastTransitionTime: now });
    const status = {
      phase: 'Running', podIP: podIp, podIPs: [{ ip: podIp }], hostIP: hostIp, hostIPs: [{ ip: hostIp }], startTime: now,
      conditions: ['PodScheduled', 'Initialized', 'ContainersReady', 'Ready'].map(cond),
      containerStatuses: (pod.spec?.containers ?? []).map((c) => ({ name: c.name, image: c.image ?? '', imageID: '', ready: true, restartCount: 0, started: true, state: { running: { startedAt: now } } })),
    };
    // A JSON patch of the status subresource (client-node's default patch type).
    await this.core.patchNamespacedPodStatus({ name, namespace, body: [{ op: 'replace', path: '/status', value: status }] });
  }

  /** A token for `serviceAccount`, bound to a pod, for one audience (kubelet's projected token). */
  async token(namespace: string, serviceAccount: string, audience: string, pod: KubeObj): Promise<string> {
    const body = { spec: { audiences: [audience], expirationSeconds: 43_200, boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: pod.metadata.name, uid: pod.metadata.uid ?? '' } } };
    // The generated client types bodies as classes; the API takes the JSON.
    // eslint-disable-next-line @typescript-eslint/no-unsafe-class-instance-assignment
    const res = await this.core.createNamespacedServiceAccountToken({ name: serviceAccount, namespace, body });
    const t = res.status?.token;
    if (t === undefined || t === '') throw new Error(`TokenRequest for ${namespace}/${serviceAccount} returned no token`);
    return t;
  }
}
