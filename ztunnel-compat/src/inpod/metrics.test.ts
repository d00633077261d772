// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { dashboardMetricNames } from '../../../test/compat/istio-files.ts';
import { WORKLOAD_MANAGER_METRICS } from '../../../test/compat/ztunnel-facts.ts';
import { InpodMetrics } from './metrics.ts';

async function values(r: Registry): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const line of (await r.metrics()).split('\n')) {
    const m = /^([a-z_]+) (\d+)$/.exec(line);
    if (m !== null) out.set(m[1] ?? '', Number(m[2]));
  }
  return out;
}

test("the workload manager metrics have ztunnel's names, the ones Istio's ztunnel dashboard reads", async () => {
  const r = new Registry();
  const m = new InpodMetrics(r);
  m.countFrom(() => ({ running: 3, pending: 1 }));
  m.started();
  m.started();
  m.stopped();
  const v = await values(r);
  const fromDashboard = [...dashboardMetricNames()].filter((n) => n.startsWith('workload_manager_'));
  assert.ok(fromDashboard.length >= 2, `the dashboard names workload_manager_* metrics: ${fromDashboard.join(', ')}`);
  for (const name of fromDashboard) assert.ok(v.has(name), `Skein exports ${name}`);
  const wm = WORKLOAD_MANAGER_METRICS;
  assert.deepEqual([v.get(wm.active), v.get(wm.pending), v.get(wm.started), v.get(wm.stopped)], [3, 1, 2, 1]);
  assert.deepEqual([...v.keys()].filter((n) => n.includes('inpod')), [], 'no names ztunnel does not have');
});
