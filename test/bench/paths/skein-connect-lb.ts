// SPDX-License-Identifier: Apache-2.0
// A service whose endpoint uses no tunnel (protocol TCP: a pod outside
// ambient behind a mesh service), dialled by its VIP from an enrolled pod.
// `skein-fastpath`: the kernel's cgroup/connect4 program connects the client
// straight to the endpoint. `skein-userspace`: the same with the fast path
// off, so istio-cni's rule sends the connection to Skein's :15001, which
// relays it as plain TCP. Skein runs on the client's node only.
import type { ActivePath, BenchEnv, BenchPath } from '../scenario.ts';
import { startSkeinNodes, workloadYaml } from './skein-nodes.ts';

export const SERVICE_VIP = '10.96.0.80';

function mesh(env: BenchEnv): string {
  const { http, bulk } = env.server;
  const svc = `bench.default.svc.cluster.local`;
  return `workloads:
${workloadYaml(env.client)}${workloadYaml(env.server.pod, 'TCP', `, services: {default/${svc}: {80: ${http.port}, ${bulk.port}: ${bulk.port}}}`)}services:
- {name: bench, namespace: default, hostname: ${svc}, vips: ["/${SERVICE_VIP}"], ports: {80: ${http.port}, ${bulk.port}: ${bulk.port}}}
`;
}

function path(name: string, fastpath: 'auto' | 'off', description: string): BenchPath {
  return {
    name,
    description,
    async setup(env: BenchEnv): Promise<ActivePath> {
      const skein = await startSkeinNodes(env.lab, { name, nodes: [env.client.node], enroll: [env.client], fastpath, mesh: mesh(env) });
      return {
        targets: { http: { host: SERVICE_VIP, port: 80 }, bulk: { host: SERVICE_VIP, port: env.server.bulk.port } },
        proxies: skein.proxies,
        teardown: skein.teardown,
      };
    },
  };
}

export const skeinFastpath = path('skein-fastpath', 'auto', 'client pod → service VIP, rewritten at connect() by Skein\'s eBPF program to the endpoint → server pod (no proxy on the path)');
export const skeinUserspace = path('skein-userspace', 'off', 'client pod → service VIP → istio-cni capture → Skein :15001 (userspace TCP relay) → server pod');
