// SPDX-License-Identifier: Apache-2.0
// A cluster with the real control plane: the lab's nodes and pods, etcd +
// kube-apiserver + istiod in the control-plane netns, every pod, service
// and namespace an object in the API server (written through
// @kubernetes/client-node, status and EndpointSlices too: there is no kubelet
// or controller-manager), and `skein proxy` on each node configured as the
// Helm chart configures it, getting its config and certificates from istiod.
// Pods are enrolled by the real istio-cni node agent (`cni: 'istio-cni'`) or
// by the istio-cni double (its real in-pod rules, ZDS).
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { V1Pod } from '@kubernetes/client-node';
import { listenTcp } from '@skein/bpf';
import { cleanupKernel } from '@skein/ztunnel-compat/accel/index';
import { startDaemon, type Daemon } from '../bench/daemon.ts';
import { installInpodRules, removeInpodRules } from '../cni/inpod-rules.ts';
import { ZdsServer } from '../cni/zds-server.ts';
import { Lab, type LabNode, type LabPod, type LabSpec } from '../lab/index.ts';
import type { KubeObj } from './kube.ts';
import { startIstioCni, startPause, type IstioCniAgent } from './istio-cni.ts';
import { CgroupHost, CONTROL_PLANE_IP, ISTIO_NAMESPACE, ISTIOD_HOST, ISTIOD_XDS_PORT, startControlPlane, type ControlPlane } from './control-plane.ts';

const MAIN = fileURLToPath(new URL('../../ztunnel-compat/src/main.ts', import.meta.url));

/** The namespace the lab's apps live in, labelled istio.io/dataplane-mode=ambient. */
export const APP_NAMESPACE = 'mesh';
export const APP_PORT = 8080;

export interface AppPod {
  name: string;
  node: number;
  serviceAccount: string;
  /** Enrolled by istio-cni (ambient); `outside` is not. */
  enrolled: boolean;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export const APP_PODS: readonly AppPod[] = [
  { name: 'client', node: 0, serviceAccount: 'client', enrolled: true },
  { name: 'blocked', node: 0, serviceAccount: 'blocked', enrolled: true },
  { name: 'neighbour', node: 0, serviceAccount: 'neighbour', enrolled: true },
  { name: 'server', node: 1, serviceAccount: 'server', enrolled: true },
  { name: 'shop', node: 1, serviceAccount: 'shop', enrolled: true },
];

/** Services: name → the app label they select and their port (target APP_PORT). */
export const APP_SERVICES = { echo: { app: 'server', port: 80 }, shop: { app: 'shop', port: 80 } } as const;

export interface IstioCluster {
  lab: Lab;
  cp: ControlPlane;
  nodes: LabNode[];
  pod(name: string): LabPod;
  /** The pod object the API server holds. */
  podObject(name: string): V1Pod;
  /** ClusterIP the API server assigned to a service. */
  vip(service: keyof typeof APP_SERVICES): string;
  /** The log file of the Skein daemon on a node (JSON lines). */
  logOf(node: LabNode): string;
  /** Skein's admin/stats ports on a node, fetched from inside its netns. */
  fetchFromNode(node: LabNode, url: string): Promise<string>;
  /** Adds a pod at runtime: object, status, app, enrollment (used for the waypoint). */
  addPod(spec: AppPod): Promise<LabPod>;
  teardown(): Promise<void>;
}

export interface IstioClusterOptions {
  istioConfigMaps: string;
  /** Copy every daemon's log here at teardown (kept after the lab is gone, also when a run fails). */
  keepLogsIn?: string;
  /** Who enrolls pods: the real istio-cni node agent, or the double (default). */
  cni?: 'istio-cni' | 'double';
  /** Extra pods the lab plans (e.g. a waypoint) that are not created in the API up front. */
  extraPods?: readonly AppPod[];
  log?: (line: string) => void;
}

function labSpec(pods: readonly AppPod[]): LabSpec {
  return {
    nodes: [0, 1].map((i) => ({
      name: `node${i}`,
      pods: pods.filter((p) => p.node === i).map((p) => ({ name: p.name, namespace: APP_NAMESPACE, serviceAccount: p.serviceAccount })),
    })),
  };
}

/** An app: answers with who it is and who called (headers), GET /bytes/<n> with n bytes. */
async function startApp(p: LabPod): Promise<() => void> {
  const web = http.createServer((req, res) => {
    const n = /^\/bytes\/(\d{1,9})$/.exec(req.url ?? '')?.[1];
    res.setHeader('x-served-by', p.name);
    res.setHeader('x-seen-from', req.socket.remoteAddress ?? '');
    const via = req.headers['x-client-src'];
    if (typeof via === 'string') res.setHeader('x-client-src', via);
    res.end(n === undefined ? `${p.name}\n` : Buffer.alloc(Number(n), 0x61));
  });
  const server = await listenTcp({ address: p.ip4, port: APP_PORT, netns: p.netnsPath }, (s) => { web.emit('connection', s); });
  return () => { server.close(); web.close(); };
}

function podObject(p: LabPod, spec: AppPod, node: LabNode): KubeObj {
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name: p.name, namespace: p.namespace, labels: { app: spec.labels?.app ?? p.name, ...spec.labels }, ...(spec.annotations === undefined ? {} : { annotations: spec.annotations }) },
    spec: {
      nodeName: node.name, serviceAccountName: p.serviceAccount, automountServiceAccountToken: false,
      containers: [{ name: 'app', image: 'skein-lab/app', ports: [{ containerPort: APP_PORT, name: 'http' }] }],
    },
  };
}

export async function startIstioCluster(o: IstioClusterOptions): Promise<IstioCluster> {
  const log = o.log ?? ((): void => undefined);
  const all = [...APP_PODS, ...(o.extraPods ?? [])];
  const lab = Lab.create(labSpec(all));
  const closers: (() => void)[] = [];
  const daemons: Daemon[] = [];
  const zds: ZdsServer[] = [];
  const agents: IstioCniAgent[] = [];
  const realCni = o.cni === 'istio-cni';
  const enrolled: { pod: LabPod; cni: ZdsServer }[] = [];
  const bpffsRoot = `/sys/fs/bpf/skein-lab-${lab.plan.runId}-istio`;
  const cleanupPins = (): void => {
    for (const n of lab.nodes) cleanupKernel(path.join(bpffsRoot, n.name));
    fs.rmSync(bpffsRoot, { recursive: true, force: true });
  };
  process.once('exit', cleanupPins);
  let cp: ControlPlane | undefined;
  const keepLogs = (to: string): void => {
    fs.mkdirSync(to, { recursive: true });
    const logs = [
      ...lab.nodes.flatMap((n) => [[path.join(lab.dir, 'skein', n.name, 'skein.log'), `${n.name}.skein.log`], [path.join(lab.dir, 'istio-cni', n.name, 'istio-cni.log'), `${n.name}.istio-cni.log`]]),
      ...(['etcd', 'kube-apiserver', 'istiod'] as const).map((f) => [cp?.logOf(f) ?? '', `${f}.log`]),
    ];
    for (const [from, name] of logs) if (from !== undefined && name !== undefined && fs.existsSync(from)) fs.copyFileSync(from, path.join(to, name));
  };
  const teardown = async (): Promise<void> => {
    for (const c of closers) c();
    for (const { pod, cni } of enrolled) {
      await cni.removePod(pod.uid).catch(() => undefined);
      try { removeInpodRules(pod.netns); } catch { /* netns gone */ }
    }
    await Promise.all(daemons.map((d) => d.stop()));
    await Promise.all(agents.map((a) => a.stop()));
    if (o.keepLogsIn !== undefined) keepLogs(o.keepLogsIn);
    for (const z of zds) z.close();
    process.off('exit', cleanupPins);
    cleanupPins();
    await cp?.stop().catch(() => undefined);
    lab.teardown();
  };
  try {
    cp = await startControlPlane(lab, { istioConfigMaps: o.istioConfigMaps, log });
    const { kube } = cp;
    const objects = new Map<string, V1Pod>();

    log(`namespace ${APP_NAMESPACE} (istio.io/dataplane-mode=ambient), service accounts, services`);
    await kube.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: APP_NAMESPACE, labels: { 'istio.io/dataplane-mode': 'ambient' } } });
    for (const sa of new Set(all.map((p) => p.serviceAccount))) await kube.apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: sa, namespace: APP_NAMESPACE } });
    const vips = new Map<string, string>();
    for (const [name, s] of Object.entries(APP_SERVICES)) {
      const svc = await kube.apply({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: APP_NAMESPACE }, spec: { selector: { app: s.app }, ports: [{ name: 'http', port: s.port, targetPort: APP_PORT, protocol: 'TCP' }] } });
      vips.set(name, (svc.spec as { clusterIP?: string } | undefined)?.clusterIP ?? '');
    }

    // Skein on each node: its pod object (the DaemonSet's), a token bound to
    // it, istiod's root certificate, and the chart's environment.
    const rootPem = await cp.rootCert();
    const nodeDir = (n: LabNode): string => path.join(lab.dir, 'skein', n.name);
    for (const n of lab.nodes) {
      const zpod = await kube.apply({
        apiVersion: 'v1', kind: 'Pod',
        metadata: { name: `ztunnel-${n.name}`, namespace: ISTIO_NAMESPACE, labels: { app: 'ztunnel', 'istio.io/dataplane-mode': 'none', 'sidecar.istio.io/inject': 'false' } },
        spec: { nodeName: n.name, serviceAccountName: 'ztunnel', automountServiceAccountToken: false, containers: [{ name: 'istio-proxy', image: 'skein' }] },
      });
      await kube.setPodRunning(ISTIO_NAMESPACE, `ztunnel-${n.name}`, n.ip4, n.ip4);
      const token = await kube.token(ISTIO_NAMESPACE, 'ztunnel', 'istio-ca', zpod);
      // The chart's mounts, relative to the daemon's working directory (ztunnel's defaults are ./var/run/secrets/...).
      const d = nodeDir(n);
      fs.mkdirSync(path.join(d, 'var/run/secrets/tokens'), { recursive: true });
      fs.mkdirSync(path.join(d, 'var/run/secrets/istio'), { recursive: true });
      fs.writeFileSync(path.join(d, 'var/run/secrets/tokens/istio-token'), token, { mode: 0o600 });
      fs.writeFileSync(path.join(d, 'var/run/secrets/istio/root-cert.pem'), rootPem);
      let inpodUds: string;
      if (realCni) {
        // istio-cni's own pod object and a token for its service account (the chart's DaemonSet).
        const cpod = await kube.apply({
          apiVersion: 'v1', kind: 'Pod',
          metadata: { name: `istio-cni-node-${n.name}`, namespace: ISTIO_NAMESPACE, labels: { 'k8s-app': 'istio-cni-node', 'istio.io/dataplane-mode': 'none' } },
          spec: { nodeName: n.name, serviceAccountName: 'istio-cni', automountServiceAccountToken: false, hostNetwork: true, containers: [{ name: 'install-cni', image: 'istio/install-cni' }] },
        });
        await kube.setPodRunning(ISTIO_NAMESPACE, `istio-cni-node-${n.name}`, n.ip4, n.ip4);
        const saToken = await kube.token(ISTIO_NAMESPACE, 'istio-cni', 'https://kubernetes.default.svc.cluster.local', cpod);
        log(`istio-cni node agent on ${n.name} (install-cni, ambient)`);
        const agent = await startIstioCni(lab, n, cp, saToken);
        agents.push(agent);
        inpodUds = agent.socket;
      } else {
        const cni = new ZdsServer(path.join(d, 'ztunnel.sock'));
        zds.push(cni);
        inpodUds = cni.path;
      }
      log(`skein proxy on ${n.name} → istiod ${CONTROL_PLANE_IP}:${ISTIOD_XDS_PORT}`);
      // In a cgroup of its own (not a pod's), so a crashed run's sweep kills it too.
      daemons.push(await startDaemon(new CgroupHost(lab, n.netns, `skein-${n.name}`), {
        cmd: process.execPath, args: [MAIN, 'proxy', 'ztunnel'], ports: [15021], comm: 'MainThread', timeoutMs: 60_000, cwd: d, logPath: path.join(d, 'skein.log'),
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          // charts/skein/templates/daemonset.yaml. The chart names istiod by
          // its service DNS name; the lab has no DNS, so the address is
          // istiod's IP and the name checked on its certificate is the same.
          CA_ADDRESS: `https://${CONTROL_PLANE_IP}:${ISTIOD_XDS_PORT}`, XDS_ADDRESS: `https://${CONTROL_PLANE_IP}:${ISTIOD_XDS_PORT}`,
          ALT_XDS_HOSTNAME: ISTIOD_HOST, ALT_CA_HOSTNAME: ISTIOD_HOST,
          CLUSTER_ID: 'Kubernetes', ISTIO_META_CLUSTER_ID: 'Kubernetes', NETWORK: '', RUST_LOG: 'info', LOG_FORMAT: 'json',
          SKEIN_KERNEL_FASTPATH: 'auto', SKEIN_BPFFS_DIR: path.join(bpffsRoot, n.name), TERMINATION_GRACE_PERIOD_SECONDS: '30',
          POD_NAME: `ztunnel-${n.name}`, POD_NAMESPACE: ISTIO_NAMESPACE, NODE_NAME: n.name, INSTANCE_IP: n.ip4, SERVICE_ACCOUNT: 'ztunnel',
          // The ambient profile's meshConfig.defaultConfig.proxyMetadata.
          ISTIO_META_ENABLE_HBONE: 'true',
          INPOD_UDS: inpodUds, IPV6_ENABLED: 'false',
        },
      }));
      await zds.at(-1)?.waitReady(60_000);
    }

    const addPod = async (spec: AppPod): Promise<LabPod> => {
      const p = lab.pod(spec.name);
      const node = p.node;
      const created = await kube.apply(podObject(p, spec, node));
      if (realCni) {
        // The sandbox comes before the pod is Running (as with a kubelet):
        // istio-cni finds the pod's netns by it when it sees the pod run.
        const agent = agents[node.index];
        if (agent === undefined) throw new Error(`no istio-cni on ${node.name}`);
        await startPause(lab, p, created, agent);
      }
      await kube.setPodRunning(p.namespace, p.name, p.ip4, node.ip4);
      closers.push(await startApp(p));
      if (realCni) {
        // istio-cni enrolls it (rules, ZDS Add to Skein) and writes the annotation itself.
        if (spec.enrolled) await untilAnnotated(kube, p, 90_000);
      } else if (spec.enrolled) {
        // What istio-cni's node agent does: in-pod rules, ZDS Add (with the
        // pod's real UID), then the annotation istiod reads to mark it HBONE
        // (istio pkg/config/constants: AmbientRedirection).
        const cni = zds[node.index];
        if (cni === undefined) throw new Error(`no ZDS server on ${node.name}`);
        const obj = await kube.core.readNamespacedPod({ name: p.name, namespace: p.namespace });
        installInpodRules(p.netns);
        const errors = await cni.addPod({ uid: obj.metadata?.uid ?? p.uid, info: { name: p.name, namespace: p.namespace, serviceAccount: p.serviceAccount }, netnsPath: p.netnsPath });
        enrolled.push({ pod: p, cni });
        const failed = errors.filter((e) => e !== '');
        if (failed.length > 0) throw new Error(`Skein refused ${p.namespace}/${p.name}: ${failed.join('; ')}`);
        await kube.core.patchNamespacedPod({ name: p.name, namespace: p.namespace, body: [{ op: 'add', path: '/metadata/annotations', value: { ...obj.metadata?.annotations, 'ambient.istio.io/redirection': 'enabled' } }] });
      }
      objects.set(p.name, await kube.core.readNamespacedPod({ name: p.name, namespace: p.namespace }));
      return p;
    };
    log(`pods: ${APP_PODS.map((p) => p.name).join(', ')} (objects, status, apps, enrollment)`);
    for (const spec of APP_PODS) await addPod(spec);
    await writeEndpointSlices(cp, lab);

    return {
      lab, cp, nodes: lab.nodes,
      pod: (name) => lab.pod(name),
      podObject: (name) => {
        const o2 = objects.get(name);
        if (o2 === undefined) throw new Error(`no pod object ${name}`);
        return o2;
      },
      vip: (s) => vips.get(s) ?? '',
      logOf: (n) => path.join(nodeDir(n), 'skein.log'),
      fetchFromNode: async (n, url) => (await n.exec('curl', ['-sS', '-m', '5', url], { timeoutMs: 10_000 })).stdout,
      addPod,
      teardown,
    };
  } catch (e) {
    await teardown().catch(() => undefined);
    throw e;
  }
}

/** Waits for istio-cni to mark a pod enrolled (ambient.istio.io/redirection: enabled). */
async function untilAnnotated(kube: ControlPlane['kube'], p: LabPod, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const obj = await kube.core.readNamespacedPod({ name: p.name, namespace: p.namespace });
    if (obj.metadata?.annotations?.['ambient.istio.io/redirection'] === 'enabled') return;
    if (Date.now() > end) throw new Error(`istio-cni did not enroll ${p.namespace}/${p.name} within ${timeoutMs} ms (annotations: ${JSON.stringify(obj.metadata?.annotations ?? {})})`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** EndpointSlices for the app services (the endpointslice controller's job; there is none). */
export async function writeEndpointSlices(cp: ControlPlane, lab: Lab): Promise<void> {
  for (const [name, s] of Object.entries(APP_SERVICES)) {
    // Each service selects app=<pod name> (podObject's default label).
    const pods = lab.pods.filter((p) => p.name === s.app);
    await cp.kube.apply({
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
      metadata: { name: `${name}-lab`, namespace: APP_NAMESPACE, labels: { 'kubernetes.io/service-name': name, 'endpointslice.kubernetes.io/managed-by': 'skein-lab' } },
      addressType: 'IPv4',
      ports: [{ name: 'http', port: APP_PORT, protocol: 'TCP' }],
      endpoints: pods.map((p) => ({ addresses: [p.ip4], conditions: { ready: true, serving: true, terminating: false }, nodeName: p.node.name, targetRef: { kind: 'Pod', name: p.name, namespace: p.namespace } })),
    });
  }
}
