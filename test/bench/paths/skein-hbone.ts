// SPDX-License-Identifier: Apache-2.0
// Skein's HBONE path: Skein on each node, both pods enrolled. The client
// dials the server pod's own address; istio-cni's rules capture it to Skein
// on node0, which carries it over mTLS + HTTP/2 CONNECT to Skein on node1's
// 15008 and on to the pod.
import type { LabNode } from '../../lab/index.ts';
import type { ActivePath, BenchEnv, BenchPath } from '../scenario.ts';
import { startSkeinNodes, workloadYaml } from './skein-nodes.ts';

function setupWith(name: string, engine: 'js' | 'native') {
  return async (env: BenchEnv): Promise<ActivePath> => {
    const near = env.client.node;
    const far = env.server.pod.node;
    const nodes: LabNode[] = near === far ? [near] : [near, far];
    const skein = await startSkeinNodes(env.lab, {
      name, nodes, enroll: [env.client, env.server.pod], fastpath: 'auto', nodeArgs: env.nodeArgs,
      mesh: `workloads:\n${workloadYaml(env.client)}${workloadYaml(env.server.pod)}`,
      env: { SKEIN_HBONE_ENGINE: engine },
    });
    return { targets: { http: env.server.http, bulk: env.server.bulk }, proxies: skein.proxies, teardown: skein.teardown };
  };
}

export const skeinHbone: BenchPath = {
  name: 'skein-hbone',
  description: 'client pod → Skein (client node, :15001) → HBONE mTLS + HTTP/2 CONNECT → Skein (server node, :15008) → server pod, in JavaScript (SKEIN_HBONE_ENGINE=js)',
  setup: setupWith('skein-hbone', 'js'),
};

/** The same two hops on the native engine, both ways (docs/native-engine.md; the default). */
export const skeinNative: BenchPath = {
  name: 'skein-native',
  description: 'as skein-hbone, on the native engine both ways: the client node\'s outbound and the server node\'s 15008 (SKEIN_HBONE_ENGINE=native, the default)',
  setup: setupWith('skein-native', 'native'),
};
