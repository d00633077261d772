// SPDX-License-Identifier: Apache-2.0
// Finding a pod's own workload (reference §5.4.2): by its ZDS info (name,
// namespace) among the workloads WDS puts on this node, waiting up to 5 s for
// WDS to catch up with a pod that was just enrolled.
import type { WorkloadInfo } from '../inpod/protocol.ts';
import type { ProxyState } from '../state/store.ts';
import type { Workload } from '../state/workload.ts';

export function findSourceWorkload(state: ProxyState, nodeName: string, info: WorkloadInfo): Workload | undefined {
  for (const w of state.workloads.onNode(nodeName)) {
    if (w.name === info.name && w.namespace === info.namespace) return w;
  }
  return undefined;
}

export function waitForSourceWorkload(state: ProxyState, nodeName: string, info: WorkloadInfo, timeoutMs = 5000): Promise<Workload | undefined> {
  const now = findSourceWorkload(state, nodeName, info);
  if (now !== undefined) return Promise.resolve(now);
  return new Promise((resolve) => {
    const off = state.onChange(() => {
      const w = findSourceWorkload(state, nodeName, info);
      if (w !== undefined) { clearTimeout(timer); off(); resolve(w); }
    });
    const timer = setTimeout(() => { off(); resolve(undefined); }, timeoutMs);
  });
}
