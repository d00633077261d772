// SPDX-License-Identifier: Apache-2.0
// 10k workloads and 2k services through the real updater path: lookups must
// still be right, and the retained heap per workload is printed (not
// asserted) so regressions in per-object cost are visible.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { XdsResource } from '../xds/client.ts';
import { ProxyState } from './store.ts';
import { ProxyStateUpdater } from './updater.ts';
import { ip, serviceResource, workloadResource } from './testing.ts';

const WORKLOADS = 10_000;
const SERVICES = 2_000;
const NAMESPACES = 100;
const NODES = 50;
const BATCH = 1_000;

/** global.gc, or the same function obtained without --expose-gc. */
function getGc(): () => void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g !== undefined) return g;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

function heapAfterGc(gc: () => void): number {
  for (let i = 0; i < 3; i++) gc();
  return process.memoryUsage().heapUsed;
}

function v4(n: number, base: number): Buffer {
  return ip(`${String(base)}.${String((n >> 16) & 255)}.${String((n >> 8) & 255)}.${String(n & 255)}`);
}

function svcHost(s: number): string {
  return `svc-${String(s)}.ns-${String(s % NAMESPACES)}.svc.cluster.local`;
}

function serviceBatch(from: number, to: number): XdsResource[] {
  const out: XdsResource[] = [];
  for (let s = from; s < to; s++) {
    out.push(serviceResource({
      name: `svc-${String(s)}`, namespace: `ns-${String(s % NAMESPACES)}`, hostname: svcHost(s),
      addresses: [{ network: '', address: v4(s, 172) }],
      ports: [{ servicePort: 80, targetPort: 8080 }, { servicePort: 443, targetPort: 8443 }],
      subjectAltNames: [],
    }));
  }
  return out;
}

/** A pod as istiod describes it: 5 replicas per service, like a Deployment. */
function workloadBatch(from: number, to: number): XdsResource[] {
  const out: XdsResource[] = [];
  for (let i = from; i < to; i++) {
    const s = i % SERVICES;
    const ns = `ns-${String(s % NAMESPACES)}`;
    const name = `app-${String(s)}-7d9f8c6b5-${i.toString(36).padStart(5, 'x')}`;
    out.push(workloadResource({
      uid: `Kubernetes//Pod/${ns}/${name}`, name, namespace: ns, addresses: [v4(i, 10)], network: '',
      tunnelProtocol: 1, trustDomain: 'cluster.local', serviceAccount: `sa-${String(s)}`,
      node: `node-${String(i % NODES)}`, canonicalName: `app-${String(s)}`, canonicalRevision: 'v1',
      workloadType: 2, workloadName: `app-${String(s)}`, clusterId: 'Kubernetes',
      locality: { region: 'eu-west1', zone: `eu-west1-${'abc'[i % 3] ?? 'a'}` },
      services: { [`${ns}/${svcHost(s)}`]: { ports: [{ servicePort: 80, targetPort: 8080 }, { servicePort: 443, targetPort: 8443 }] } },
    }));
  }
  return out;
}

test('10k workloads and 2k services: lookups hold, memory per workload is reported', () => {
  const gc = getGc();
  const state = new ProxyState();
  const updater = new ProxyStateUpdater(state);
  const h = updater.addressHandler;

  // Warm up first: compiled code, hidden classes and intern tables built on
  // first use would otherwise be charged to the workloads.
  const warm = workloadBatch(WORKLOADS, WORKLOADS + BATCH);
  h.handle(serviceBatch(SERVICES, SERVICES + 10), []);
  h.handle(warm, []);
  h.handle([], [...warm.map((r) => r.name), ...serviceBatch(SERVICES, SERVICES + 10).map((r) => r.name)]);
  assert.equal(state.workloads.count + state.services.count, 0);

  const empty = heapAfterGc(gc);
  for (let i = 0; i < SERVICES; i += BATCH) assert.deepEqual(h.handle(serviceBatch(i, Math.min(i + BATCH, SERVICES)), []), []);
  const withServices = heapAfterGc(gc);
  const started = performance.now();
  let half = 0;
  for (let i = 0; i < WORKLOADS; i += BATCH) {
    assert.deepEqual(h.handle(workloadBatch(i, i + BATCH), []), []);
    if (i + BATCH === WORKLOADS / 2) half = heapAfterGc(gc);
  }
  const elapsed = performance.now() - started;
  const withWorkloads = heapAfterGc(gc);

  assert.equal(state.workloads.count, WORKLOADS);
  assert.equal(state.services.count, SERVICES);
  assert.equal(state.services.stagedServices.size, 0);
  for (const i of [0, 1, 4_999, 9_999]) {
    const w = state.workloads.byAddress('', `10.0.${String((i >> 8) & 255)}.${String(i & 255)}`);
    assert.ok(w, `workload ${String(i)} by address`);
    assert.equal(state.workloads.byUid(w.uid), w);
  }
  for (const s of [0, 1_999]) {
    const svc = state.services.byVip('', `172.0.${String((s >> 8) & 255)}.${String(s & 255)}`);
    assert.equal(svc?.hostname, svcHost(s));
    assert.equal(svc.endpoints.size, WORKLOADS / SERVICES);
    assert.equal(state.services.byNamespacedHostname(svc.namespace, svc.hostname), svc);
  }
  assert.equal(state.workloads.onNode('node-7').length, WORKLOADS / NODES);

  // Removing half the workloads takes their endpoints with them.
  const gone = [...state.workloads.values()].filter((_, i) => i % 2 === 0).map((w) => w.uid);
  h.handle([], gone);
  assert.equal(state.workloads.count, WORKLOADS / 2);
  let endpoints = 0;
  for (const s of state.services.values()) endpoints += s.endpoints.size;
  assert.equal(endpoints, WORKLOADS / 2);

  // The second half's cost is the marginal one: code optimised and tables
  // grown during the first half are not charged to it.
  const perWorkload = (withWorkloads - half) / (WORKLOADS / 2);
  const average = (withWorkloads - withServices) / WORKLOADS;
  const perService = (withServices - empty) / SERVICES;
  console.log(
    `state scale: ${String(Math.round(perWorkload))} B retained per workload (marginal; ${String(Math.round(average))} B on average), ` +
    `incl. indexes and one endpoint; ${String(Math.round(perService))} B per service; ` +
    `200k workloads ≈ ${(perWorkload * 200_000 / 2 ** 20).toFixed(0)} MiB; ${String(WORKLOADS)} workloads applied in ${elapsed.toFixed(0)} ms`,
  );
});
