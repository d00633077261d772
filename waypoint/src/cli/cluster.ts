// SPDX-License-Identifier: Apache-2.0
// The only module that talks to the Kubernetes API: server-side apply, read,
// list and delete through @kubernetes/client-node's KubernetesObjectApi, which
// finds each kind's resource name through API discovery.
import { ApiException, KubeConfig, KubernetesObjectApi, PatchStrategy, V1ObjectMeta, type KubernetesObject } from '@kubernetes/client-node';
import { FIELD_MANAGER } from '../manifest/constants.ts';
import type { KubeObject } from '../manifest/types.ts';

export class WaypointClusterError extends Error {
  override name = 'WaypointClusterError';
  readonly code = 'SKEIN_WAYPOINT_CLUSTER';
}

/** What the CLI needs of a cluster; tests may pass their own. */
export interface Cluster {
  readonly defaultNamespace: string;
  apply(obj: KubeObject): Promise<void>;
  read(apiVersion: string, kind: string, namespace: string | undefined, name: string): Promise<KubernetesObject | undefined>;
  list(apiVersion: string, kind: string, namespace: string | undefined): Promise<KubernetesObject[]>;
  /** False when there was nothing to delete. */
  delete(apiVersion: string, kind: string, namespace: string, name: string): Promise<boolean>;
}

/** The cluster of the current kubeconfig context ($KUBECONFIG, ~/.kube/config, in-cluster). */
export function connectCluster(): Cluster {
  const kc = new KubeConfig();
  kc.loadFromDefault();
  if (kc.getCurrentCluster() === null) throw new WaypointClusterError('no cluster in the kubeconfig (set KUBECONFIG or ~/.kube/config)');
  const api = KubernetesObjectApi.makeApiClient(kc);
  const defaultNamespace = kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
  return {
    defaultNamespace,
    async apply(obj) {
      // JSON is YAML, so the apply-patch+yaml content type takes it as is.
      await call(`apply ${describe(obj)}`, () => api.patch(obj, undefined, undefined, FIELD_MANAGER, true, PatchStrategy.ServerSideApply));
    },
    async read(apiVersion, kind, namespace, name) {
      try {
        return await api.read({ apiVersion, kind, metadata: { name, namespace } });
      } catch (err) {
        if (err instanceof ApiException && err.code === 404) return undefined;
        throw wrap(`read ${kind} ${namespace ?? ''}/${name}`, err);
      }
    },
    async list(apiVersion, kind, namespace) {
      const res = await call(`list ${kind}`, () => api.list(apiVersion, kind, namespace));
      return res.items;
    },
    async delete(apiVersion, kind, namespace, name) {
      try {
        await api.delete({ apiVersion, kind, metadata: meta(namespace, name) });
        return true;
      } catch (err) {
        if (err instanceof ApiException && err.code === 404) return false;
        throw wrap(`delete ${kind} ${namespace}/${name}`, err);
      }
    },
  };
}

function meta(namespace: string | undefined, name: string): V1ObjectMeta {
  const m = new V1ObjectMeta();
  m.name = name;
  if (namespace !== undefined) m.namespace = namespace;
  return m;
}

export function describe(obj: KubeObject): string {
  return obj.metadata.namespace === undefined ? `${obj.kind} ${obj.metadata.name}` : `${obj.kind} ${obj.metadata.namespace}/${obj.metadata.name}`;
}

async function call<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw wrap(what, err);
  }
}

function wrap(what: string, err: unknown): WaypointClusterError {
  if (err instanceof ApiException) return new WaypointClusterError(`${what}: HTTP ${err.code}: ${statusMessage(err.body)}`, { cause: err });
  return new WaypointClusterError(`${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

/** The `message` of a Kubernetes Status body (object or JSON text), else the body as text. */
function statusMessage(body: unknown): string {
  let parsed = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      return body;
    }
  }
  const message = (parsed as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : JSON.stringify(parsed);
}
