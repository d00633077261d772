// SPDX-License-Identifier: Apache-2.0
// Skein on the client's node, the client dialling a service VIP. Two cases:
//  - `same-node`: the endpoint is an enrolled pod on the same node (HBONE).
//    With the fast path the kernel applies the destination's policy at
//    connect() and hands the flow to the app's listener past the capture;
//    without it, Skein carries it over HBONE through its own 15001 and 15008.
//  - `no-tunnel`: the endpoint is a pod outside ambient (protocol TCP). With
//    the fast path the kernel connects straight to it; without it, Skein's
//    15001 relays plain TCP.
import type { ActivePath, BenchEnv, BenchPath } from '../scenario.ts';
import { startSkeinNodes, workloadYaml } from './skein-nodes.ts';

export const SERVICE_VIP = '10.96.0.80';

type Case = 'same-node' | 'no-tunnel';

function mesh(env: BenchEnv, c: Case): string {
  const { http, bulk } = env.server;
  const svc = `bench.default.svc.cluster.local`;
  return `workloads:
${workloadYaml(env.client)}${workloadYaml(env.server.pod, c === 'same-node' ? 'HBONE' : 'TCP', `, services: {default/${svc}: {80: ${http.port}, ${bulk.port}: ${bulk.port}}}`)}services:
- {name: bench, namespace: default, hostname: ${svc}, vips: ["/${SERVICE_VIP}"], ports: {80: ${http.port}, ${bulk.port}: ${bulk.port}}}
`;
}

function path(name: string, c: Case, fastpath: 'auto' | 'off', description: string): BenchPath {
  return {
    name,
    description,
    async setup(env: BenchEnv): Promise<ActivePath> {
      const enroll = c === 'same-node' ? [env.client, env.server.pod] : [env.client];
      const skein = await startSkeinNodes(env.lab, { name, nodes: [env.client.node], enroll, fastpath, mesh: mesh(env, c), nodeArgs: env.nodeArgs });
      return {
        targets: { http: { host: SERVICE_VIP, port: 80 }, bulk: { host: SERVICE_VIP, port: env.server.bulk.port } },
        proxies: skein.proxies,
        teardown: skein.teardown,
      };
    },
  };
}

export const skeinFastpath = path('skein-fastpath', 'same-node', 'auto', 'client pod → service VIP, decided at connect() by Skein\'s eBPF programs (policy, endpoint) → past the server pod\'s capture to its listener (no proxy on the path)');
export const skeinUserspace = path('skein-userspace', 'same-node', 'off', 'client pod → service VIP → istio-cni capture → Skein :15001 → HBONE (mTLS + HTTP/2) → Skein :15008 in the server pod → server');
export const skeinConnectLb = path('skein-connectlb', 'no-tunnel', 'auto', 'client pod → service VIP, rewritten at connect() by Skein\'s eBPF program to the no-tunnel endpoint → server pod');
export const skeinConnectLbUserspace = path('skein-connectlb-userspace', 'no-tunnel', 'off', 'client pod → service VIP → istio-cni capture → Skein :15001 (userspace TCP relay) → no-tunnel server pod');
