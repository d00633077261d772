// SPDX-License-Identifier: Apache-2.0
// istio_tcp_* series of label sets nobody uses any more leave the scrape
// (SKEIN_STATS_EVICTION_INTERVAL), as pods come and go over a node's life,
// while a connection still open keeps its own, on both daemons of a live
// mesh: the daemons' configuration, timer and metrics end to end.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { needsRoot } from '../skips.ts';
import { must } from './lab-helpers.ts';
import { ask, longLivedClientScript, startMeshLab, sum, type MeshLab } from './mesh-lab.ts';
import { until } from './until.ts';

const skip = needsRoot('lab namespaces, iptables');
const EVICT_S = 2;

let mesh: MeshLab | undefined;
const m = (): MeshLab => must(mesh, 'mesh');

before(async () => {
  if (skip !== false) return;
  mesh = await startMeshLab({
    nodes: [[{ name: 'client' }, { name: 'job', serviceAccount: 'job' }], [{ name: 'server', serviceAccount: 'server' }]],
    env: { SKEIN_STATS_EVICTION_INTERVAL: `${EVICT_S}s` },
  });
  await m().cnis[0]?.enroll(m().pod('client'));
  await m().cnis[0]?.enroll(m().pod('job'));
  await m().cnis[1]?.enroll(m().pod('server'));
});
after(async () => {
  await mesh?.close();
});

/** Connections opened from `workload`, as node `i` counts them (reporter source on node0, destination on node1). */
async function openedFrom(i: number, workload: string): Promise<number> {
  const reporter = i === 0 ? 'source' : 'destination';
  return sum(await m().scrape(i), new RegExp(`^istio_tcp_connections_opened_total\\{reporter="${reporter}"[^}]*source_workload="${workload}"`));
}

test('an idle label set leaves the scrape on both nodes after the eviction interval; an open connection keeps its own; a set that comes back starts from zero', { skip, timeout: 60_000 }, async () => {
  const client = m().pod('client');
  const job = m().pod('job');
  const server = m().pod('server');
  // A connection held open for the whole test, echoing every 0.5 s.
  const held = client.exec('python3', ['-c', longLivedClientScript(server.ip4, 8080, 4 * EVICT_S + 4)], { timeoutMs: (4 * EVICT_S + 20) * 1000 });
  await until('the held connection is counted on both nodes', async () => (await openedFrom(0, 'client')) === 1 && (await openedFrom(1, 'client')) === 1, 10_000);

  const r = await ask(job, server.ip4);
  assert.ok(r.ok, r.out);
  await until("the job's connection is counted on both nodes", async () => (await openedFrom(0, 'job')) === 1 && (await openedFrom(1, 'job')) === 1, 5000);
  const shown = Date.now();
  await until("the job's series leave both scrapes", async () => (await openedFrom(0, 'job')) === 0 && (await openedFrom(1, 'job')) === 0, (EVICT_S + 6) * 1000);
  assert.ok(Date.now() - shown >= (EVICT_S - 1) * 1000, 'not before the interval');
  assert.doesNotMatch(await m().scrape(1), /^istio_tcp_[a-z_]+\{[^}]*source_workload="job"/m, 'closed, bytes: all of its series');

  // Open longer than the interval, its series stay.
  assert.equal(await openedFrom(0, 'client'), 1);
  assert.equal(await openedFrom(1, 'client'), 1);

  const out = await held;
  assert.equal(out.code, 0, out.stdout + out.stderr);
  assert.match(out.stdout, /^OK \d+/);
  await until('closed, the held connection is counted closed', async () =>
    sum(await m().scrape(1), /^istio_tcp_connections_closed_total\{reporter="destination"[^}]*source_workload="client"/) === 1, 5000);
  await until('then idle, its series leave both scrapes', async () => (await openedFrom(0, 'client')) === 0 && (await openedFrom(1, 'client')) === 0, (EVICT_S + 6) * 1000);

  const again = await ask(job, server.ip4);
  assert.ok(again.ok, again.out);
  await until("the job's next connection is counted from zero", async () => (await openedFrom(0, 'job')) === 1 && (await openedFrom(1, 'job')) === 1, 5000);
});
