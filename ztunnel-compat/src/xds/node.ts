// SPDX-License-Identifier: Apache-2.0
// The Node a ztunnel presents to istiod (reference §1.2): the `ztunnel~`
// prefix makes istiod treat the proxy as a ztunnel; the metadata is a Struct
// of strings plus ISTIO_META_* / ISTIO_METAJSON_* values.
import type { Config } from '../config.ts';
import { toStruct, type JsonValue, type MessageInit, type Node } from './proto.ts';

export function nodeId(c: Pick<Config, 'instanceIp' | 'podName' | 'podNamespace'>): string {
  return `ztunnel~${c.instanceIp || '1.1.1.1'}~${c.podName}.${c.podNamespace}~${c.podNamespace}.svc.cluster.local`;
}

export function buildNode(c: Config): MessageInit<Node> {
  const meta: Record<string, JsonValue> = {
    NAME: c.podName,
    NAMESPACE: c.podNamespace,
    INSTANCE_IPS: c.instanceIp,
    NODE_NAME: c.nodeName,
  };
  for (const [k, v] of Object.entries(c.istioMeta)) meta[k] = v;
  for (const [k, v] of Object.entries(c.istioMetaJson)) meta[k] = v as JsonValue;
  return { id: nodeId(c), metadata: toStruct(meta) };
}
