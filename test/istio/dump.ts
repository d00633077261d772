// SPDX-License-Identifier: Apache-2.0
// Reading Skein's /config_dump on a lab node (from inside the node's netns).
import type { IstioCluster } from './cluster.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls Skein's config_dump on a node until `cond` holds (bounded). */
export async function untilDump(c: IstioCluster, node: number, what: string, cond: (d: Record<string, unknown>) => boolean, timeoutMs = 60_000): Promise<Record<string, unknown>> {
  const n = c.nodes[node];
  if (n === undefined) throw new Error(`no node ${node}`);
  const end = Date.now() + timeoutMs;
  for (;;) {
    let d: Record<string, unknown> = {};
    try { d = JSON.parse(await c.fetchFromNode(n, 'http://127.0.0.1:15000/config_dump')) as Record<string, unknown>; } catch { /* not up yet */ }
    if (cond(d)) return d;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} in ${n.name}'s config_dump`);
    await sleep(500);
  }
}
