// SPDX-License-Identifier: Apache-2.0
// The waypoint path against real istiod. What is real: the Gateway (class
// istio-waypoint) applied through the Gateway API, istiod's gateway
// deployment controller rendering the waypoint's Deployment and Service from
// the injector templates, the Service's ClusterIP from the apiserver, the
// `istio.io/use-waypoint` binding, and istiod computing the waypoint address
// and the sandwich binding (`ambient.istio.io/waypoint-inbound-binding:
// PROXY/15088` on the Gateway → applicationTunnel on the waypoint's workload).
// What stands in: there is no kubelet, so the lab creates the waypoint pod
// the Deployment asks for, and there is no Envoy binary from a registry, so
// haproxy plays the waypoint's proxy behind Skein (Skein terminates HBONE in
// the enrolled waypoint pod and hands the connection over with PROXY v2,
// haproxy routes on Host), as in the demo.
import fs from 'node:fs';
import path from 'node:path';
import { haproxyWaypointConfig } from '../integration/lab-helpers.ts';
import { APP_NAMESPACE, APP_PORT, APP_SERVICES, type AppPod, type IstioCluster } from './cluster.ts';
import type { PathResult } from './probes.ts';
import { untilDump } from './dump.ts';

export const WAYPOINT = 'waypoint';
const TUNNEL_PORT = 15088;
/** The pod the waypoint Deployment would run (gateway-name label: istio's waypoint template selects on it). */
export const WAYPOINT_POD: AppPod = {
  name: WAYPOINT, node: 1, serviceAccount: WAYPOINT, enrolled: true,
  labels: { app: WAYPOINT, 'gateway.networking.k8s.io/gateway-name': WAYPOINT, 'istio.io/gateway-name': WAYPOINT },
};

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, timeoutMs: number, get: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await get().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(500);
  }
}

export async function waypoint(c: IstioCluster): Promise<PathResult> {
  const { kube } = c.cp;
  const shopHost = `shop.${APP_NAMESPACE}.svc.cluster.local`;
  await kube.apply({
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway',
    metadata: { name: WAYPOINT, namespace: APP_NAMESPACE, labels: { 'istio.io/waypoint-for': 'service' }, annotations: { 'ambient.istio.io/waypoint-inbound-binding': `PROXY/${TUNNEL_PORT}` } },
    spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
  });
  // istiod's deployment controller writes the waypoint's Service (and Deployment).
  const svc = await until(`istiod to create Service ${APP_NAMESPACE}/${WAYPOINT}`, 90_000, async () => {
    const s = await kube.core.readNamespacedService({ name: WAYPOINT, namespace: APP_NAMESPACE });
    return s.spec?.clusterIP === undefined ? undefined : s;
  });
  const sa = await until(`istiod to create the waypoint Deployment`, 30_000, async () => {
    const r = await kube.read({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: WAYPOINT, namespace: APP_NAMESPACE } });
    const spec = r?.spec as { template?: { spec?: { serviceAccountName?: string } } } | undefined;
    return spec?.template?.spec?.serviceAccountName;
  });
  if (sa !== WAYPOINT_POD.serviceAccount) throw new Error(`the waypoint Deployment runs as ${sa}, the lab's pod as ${WAYPOINT_POD.serviceAccount}`);

  // The pod its Deployment asks for, enrolled; haproxy where Envoy would be.
  const wp = await c.addPod(WAYPOINT_POD);
  const shop = c.pod('shop');
  const cfg = path.join(c.lab.dir, 'waypoint-haproxy.cfg');
  fs.writeFileSync(cfg, haproxyWaypointConfig({ port: TUNNEL_PORT, host: shopHost, backend: `${shop.ip4}:${APP_PORT}`, tag: true }));
  wp.spawn('haproxy', ['-db', '-f', cfg], { stdio: 'ignore' });
  await until('haproxy to listen', 10_000, () => Promise.resolve(wp.run('ss', '-Hltn').includes(`:${TUNNEL_PORT}`) ? true : undefined));
  await kube.apply({
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: { name: `${WAYPOINT}-lab`, namespace: APP_NAMESPACE, labels: { 'kubernetes.io/service-name': WAYPOINT, 'endpointslice.kubernetes.io/managed-by': 'skein-lab' } },
    addressType: 'IPv4',
    ports: (svc.spec?.ports ?? []).map((p) => ({ name: p.name, port: typeof p.targetPort === 'number' ? p.targetPort : p.port, protocol: 'TCP' })),
    endpoints: [{ addresses: [wp.ip4], conditions: { ready: true, serving: true, terminating: false }, nodeName: wp.node.name, targetRef: { kind: 'Pod', name: wp.name, namespace: APP_NAMESPACE } }],
  });
  // Bind the shop service to the waypoint.
  await kube.core.patchNamespacedService({ name: 'shop', namespace: APP_NAMESPACE, body: [{ op: 'add', path: '/metadata/labels', value: { 'istio.io/use-waypoint': WAYPOINT } }] });
  const svcs = (d: Record<string, unknown>): Record<string, unknown>[] => (Array.isArray(d.services) ? d.services as Record<string, unknown>[] : Object.values((d.services ?? {}) as Record<string, Record<string, unknown>>));
  const wls = (d: Record<string, unknown>): Record<string, unknown>[] => (Array.isArray(d.workloads) ? d.workloads as Record<string, unknown>[] : Object.values((d.workloads ?? {}) as Record<string, Record<string, unknown>>));
  await untilDump(c, 0, 'shop bound to the waypoint', (d) => svcs(d).some((s) => s.name === 'shop' && s.waypoint !== undefined));
  const d1 = await untilDump(c, 1, 'the waypoint workload with its PROXY binding', (d) => wls(d).some((w) => w.name === WAYPOINT && JSON.stringify(w.applicationTunnel ?? {}).includes('PROXY')));
  const tunnel = JSON.stringify(wls(d1).find((w) => w.name === WAYPOINT)?.applicationTunnel);

  const tries = [];
  for (let i = 0; i < 3; i++) {
    const r = await c.pod('client').exec('curl', ['-sS', '-m', '5', '-o', '/dev/null', '-H', `Host: ${shopHost}`, '-w', '%{http_code}|%header{x-served-by}|%header{x-seen-from}|%header{x-waypoint}|%header{x-client-src}', `http://${c.vip('shop')}:${APP_SERVICES.shop.port}/`], { timeoutMs: 10_000 });
    const [code, servedBy, seenFrom, via, clientSrc] = r.stdout.split('|');
    tries.push({ code: Number(code ?? 0), servedBy, seenFrom, via, clientSrc: (clientSrc ?? '').trim(), err: r.stderr.trim() });
  }
  const client = c.pod('client');
  const ok = tries.every((t) => t.code === 200 && t.servedBy === 'shop' && t.seenFrom === wp.ip4 && t.via === 'haproxy' && t.clientSrc === client.ip4);
  return {
    path: 'waypoint',
    ok,
    decision: ok
      ? `shop (${c.vip('shop')}) is bound to waypoint ${APP_NAMESPACE}/${WAYPOINT} (Service ${svc.spec?.clusterIP ?? ''} made by istiod); Skein sent HBONE to the waypoint pod, which istiod gave applicationTunnel ${tunnel}; haproxy (standing in for Envoy) got the client ${client.ip4} over PROXY v2 and routed to shop`
      : `failed: ${tries.map((t) => `${t.code || t.err} served-by=${t.servedBy ?? ''} seen-from=${t.seenFrom ?? ''} via=${t.via ?? ''}`).join('; ')}`,
  };
}
