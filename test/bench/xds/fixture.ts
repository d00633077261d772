// SPDX-License-Identifier: Apache-2.0
// The mesh the xds benchmark serves: N workloads spread over namespaces and
// services, each service with a VIP, and namespace-scoped policies. Pure, so
// that the double's process and the tests build the same resources.
import { TunnelProtocol, type MessageInit, type Workload, type Service, type Authorization } from '@skein/ztunnel-compat/xds/proto';

export interface MeshSize { workloads: number; services: number; policies: number }

const NAMESPACES = 50;

function ip4(base: number, i: number): Buffer {
  return Buffer.from([base, (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff]);
}

export function workload(i: number, size: MeshSize, generation = 0): MessageInit<Workload> {
  const ns = `ns${i % NAMESPACES}`;
  const svc = i % size.services;
  return {
    uid: `Kubernetes//Pod/${ns}/app-${i}`,
    name: `app-${i}`,
    namespace: ns,
    serviceAccount: `sa${i % 200}`,
    addresses: [ip4(10, i + 1)],
    tunnelProtocol: TunnelProtocol.HBONE,
    node: `node${i % 100}`,
    canonicalName: `app${svc}`,
    canonicalRevision: `v${generation}`,
    workloadName: `app${svc}`,
    clusterId: 'Kubernetes',
    services: { [`ns${svc % NAMESPACES}/svc${svc}.ns${svc % NAMESPACES}.svc.cluster.local`]: { ports: [{ servicePort: 80, targetPort: 8080 }] } },
  };
}

export function service(j: number): MessageInit<Service> {
  const ns = `ns${j % NAMESPACES}`;
  return {
    name: `svc${j}`,
    namespace: ns,
    hostname: `svc${j}.${ns}.svc.cluster.local`,
    addresses: [{ network: '', address: ip4(172, j + 1) }],
    ports: [{ servicePort: 80, targetPort: 8080 }],
  };
}

export function policy(k: number): MessageInit<Authorization> {
  const ns = `ns${k % NAMESPACES}`;
  return {
    name: `allow-${k}`,
    namespace: ns,
    scope: 1,
    action: 0,
    rules: [{ clauses: [{ matches: [{ principals: [{ exact: `cluster.local/ns/${ns}/sa/sa${k % 200}` }], destinationPorts: [8080] }] }] }],
  };
}
