// SPDX-License-Identifier: Apache-2.0
// Reference path 1: no mesh. The client pod dials the server pod directly,
// routed by both nodes' kernels; the floor every proxied path is held to.
import type { ActivePath, BenchEnv, BenchPath } from '../scenario.ts';

export const noMesh: BenchPath = {
  name: 'no-mesh',
  description: 'client pod → server pod directly (kernel routing only)',
  setup(env: BenchEnv): Promise<ActivePath> {
    const { http, bulk } = env.server;
    return Promise.resolve({ targets: { http, bulk }, proxies: [], teardown: () => Promise.resolve() });
  },
};
