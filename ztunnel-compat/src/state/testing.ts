// SPDX-License-Identifier: Apache-2.0
// Builders for the state tests. Messages go through the real protobuf
// encode/decode, so tests see exactly the decoded shape the xDS client hands
// the updater (absent defaults, Buffers, numeric enums).
import type { XdsResource } from '../xds/client.ts';
import {
  ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, codecs, packResource,
  type Authorization, type MessageInit, type Service, type Workload,
} from '../xds/proto.ts';
import { ipToBytes } from './ip.ts';

/** Address bytes for an IP literal. */
export function ip(text: string): Buffer {
  const b = ipToBytes(text);
  if (b === undefined) throw new Error(`not an IP: ${text}`);
  return Buffer.from(b);
}

export function xdsWorkload(init: MessageInit<Workload>): Workload {
  return codecs.Workload.decode(codecs.Workload.encode(init));
}

export function xdsService(init: MessageInit<Service>): Service {
  return codecs.Service.decode(codecs.Service.encode(init));
}

export function workloadResource(init: MessageInit<Workload>, name = init.uid ?? ''): XdsResource {
  return { name, version: '1', resource: packResource(ADDRESS_TYPE_URL, { workload: init }) };
}

export function serviceResource(init: MessageInit<Service>, name = `${init.namespace ?? ''}/${init.hostname ?? ''}`): XdsResource {
  return { name, version: '1', resource: packResource(ADDRESS_TYPE_URL, { service: init }) };
}

export function policyResource(init: MessageInit<Authorization>, name = `${init.namespace ?? ''}/${init.name ?? ''}`): XdsResource {
  return { name, version: '1', resource: packResource(AUTHORIZATION_TYPE_URL, init) };
}

/** A pod the way istiod sends one: `<cluster>//Pod/<ns>/<name>`. */
export function pod(name: string, ns: string, addr: string, extra: MessageInit<Workload> = {}): MessageInit<Workload> {
  return {
    uid: `Kubernetes//Pod/${ns}/${name}`, name, namespace: ns, addresses: [ip(addr)],
    tunnelProtocol: 1, serviceAccount: 'sa', node: 'node-a', ...extra,
  };
}
