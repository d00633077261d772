// SPDX-License-Identifier: Apache-2.0
// The real control plane inside the lab: etcd, kube-apiserver and istiod, each
// a process in a "control-plane" netns on the lab's fabric bridge (never on the
// root namespace's ports) and in a cgroup under the lab's, so that the lab's
// teardown, and the sweep after a crashed run, kill them by PID.
import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startDaemon, type Daemon, type DaemonHost } from '../bench/daemon.ts';
import { LAB_PREFIX, type Lab } from '../lab/index.ts';
import { ipBatch, inNetns } from '../lab/sh.ts';
import { bin, crdFiles } from './binaries.ts';
import { LabKube } from './kube.ts';
import { createKubePki, kubeconfigYaml, type KubePki } from './pki.ts';

/** The control plane's address on the fabric (nodes are 172.31.0.10+). */
export const CONTROL_PLANE_IP = '172.31.0.2';
export const APISERVER_PORT = 6443;
export const ISTIOD_XDS_PORT = 15012;
export const ISTIO_NAMESPACE = 'istio-system';
/** The name istiod's serving certificate carries (what the Helm chart's XDS_ADDRESS names). */
export const ISTIOD_HOST = `istiod.${ISTIO_NAMESPACE}.svc`;
/** The service CIDR the apiserver allocates ClusterIPs from: the lab's service range. */
const SERVICE_CIDR = '10.96.0.0/16';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A process host: a netns plus a cgroup under the lab's (the lab's spawn
 * wrapper, same shape), so that teardown and the sweep after a crashed run
 * kill its processes by PID.
 */
export class CgroupHost implements DaemonHost {
  readonly netns: string;
  readonly netnsPath: string;
  readonly #cgroup: string;
  readonly #lab: Lab;

  constructor(lab: Lab, netns: string, cgroupName: string) {
    this.#lab = lab;
    this.netns = netns;
    this.netnsPath = `/run/netns/${netns}`;
    this.#cgroup = path.join(lab.cgroupDir, cgroupName);
    fs.mkdirSync(this.#cgroup, { recursive: true });
  }

  spawn(cmd: string, args: readonly string[] = [], options: SpawnOptions = {}): ChildProcess {
    const script = 'cg=$1; ns=$2; shift 2; echo $$ > "$cg/cgroup.procs" || exit 111; exec nsenter --net="$ns" -- "$@"';
    const child = spawn('sh', ['-c', script, 'skein-cp', this.#cgroup, this.netnsPath, cmd, ...args], options);
    this.#lab.track(child);
    return child;
  }

  run(cmd: string, ...args: string[]): string {
    return inNetns(this.netns, cmd, args);
  }

  /** Runs a short command in the netns (bounded: 15 s), resolving to its trimmed stdout. */
  exec(argv: readonly string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile('ip', ['netns', 'exec', this.netns, ...argv], { timeout: 15_000, encoding: 'utf8' }, (err, stdout) => {
        if (err !== null) reject(new Error(`${argv.join(' ')} in ${this.netns}: ${err.message}`));
        else resolve(stdout.trim());
      });
    });
  }
}

export interface ControlPlane {
  host: CgroupHost;
  kube: LabKube;
  pki: KubePki;
  /** A kubeconfig file for the admin user (istiod's, istioctl's). */
  kubeconfig: string;
  dir: string;
  logOf(name: 'etcd' | 'kube-apiserver' | 'istiod'): string;
  /** istiod's root certificate (the istio-ca-root-cert ConfigMap), once istiod has made it. */
  rootCert(): Promise<string>;
  stop(): Promise<void>;
}

export interface ControlPlaneOptions {
  /** ConfigMaps `istio` (mesh config) and `istio-sidecar-injector`, as the istiod chart renders them. */
  istioConfigMaps: string;
  /** istiod's extra environment. */
  istiodEnv?: Readonly<Record<string, string>>;
  log?: (line: string) => void;
}

export async function startControlPlane(lab: Lab, o: ControlPlaneOptions): Promise<ControlPlane> {
  const log = o.log ?? ((): void => undefined);
  const netns = `${LAB_PREFIX}${lab.plan.runId}-cp`;
  const dir = path.join(lab.dir, 'control-plane');
  fs.mkdirSync(dir, { recursive: true });
  const daemons: Daemon[] = [];
  const stop = async (): Promise<void> => {
    // istiod first, etcd last: each stops while what it needs is still there.
    for (const d of daemons.reverse()) await d.stop();
    daemons.length = 0;
    if (fs.existsSync(`/run/netns/${netns}`)) ipBatch(null, [`netns del ${netns}`]);
  };
  try {
    // A veth from the fabric bridge, like a node's.
    ipBatch(null, [`netns add ${netns}`]);
    ipBatch(lab.plan.fabricNetns, [`link add cp0 type veth peer name eth0 netns ${netns}`, 'link set cp0 master br0', 'link set cp0 up']);
    ipBatch(netns, ['link set lo up', `addr add ${CONTROL_PLANE_IP}/24 dev eth0`, 'link set eth0 up']);
    const host = new CgroupHost(lab, netns, 'control-plane');
    const logOf = (name: string): string => path.join(dir, `${name}.log`);

    const pki = createKubePki(path.join(dir, 'pki'), [CONTROL_PLANE_IP, '10.96.0.1', '127.0.0.1'], ['kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local']);
    const kubeconfig = path.join(dir, 'kubeconfig');
    fs.writeFileSync(kubeconfig, kubeconfigYaml(pki, `https://${CONTROL_PLANE_IP}:${APISERVER_PORT}`), { mode: 0o600 });

    log('etcd');
    daemons.push(await startDaemon(host, {
      cmd: bin('etcd'), ports: [2379], timeoutMs: 30_000, logPath: logOf('etcd'), comm: 'etcd',
      args: ['--name=lab', `--data-dir=${path.join(dir, 'etcd')}`, '--listen-client-urls=http://127.0.0.1:2379', '--advertise-client-urls=http://127.0.0.1:2379',
        '--listen-peer-urls=http://127.0.0.1:2380', '--initial-advertise-peer-urls=http://127.0.0.1:2380', '--initial-cluster=lab=http://127.0.0.1:2380',
        '--log-level=warn', '--unsafe-no-fsync', '--quota-backend-bytes=1073741824'],
    }));

    log('kube-apiserver');
    daemons.push(await startDaemon(host, {
      cmd: bin('kube-apiserver'), ports: [APISERVER_PORT], timeoutMs: 120_000, logPath: logOf('kube-apiserver'),
      args: ['--etcd-servers=http://127.0.0.1:2379', `--advertise-address=${CONTROL_PLANE_IP}`, `--bind-address=${CONTROL_PLANE_IP}`, `--secure-port=${APISERVER_PORT}`,
        `--tls-cert-file=${pki.serverCert}`, `--tls-private-key-file=${pki.serverKey}`, `--client-ca-file=${pki.caCert}`,
        `--service-account-key-file=${pki.saPub}`, `--service-account-signing-key-file=${pki.saKey}`, '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
        '--api-audiences=https://kubernetes.default.svc.cluster.local', `--service-cluster-ip-range=${SERVICE_CIDR}`,
        '--authorization-mode=RBAC', '--allow-privileged=true', '--profiling=false', `--cert-dir=${path.join(dir, 'apiserver-certs')}`,
        // Lighter on a small machine; nothing here needs them.
        '--enable-priority-and-fairness=false', '--watch-cache=true', '--v=0'],
    }));
    const kube = new LabKube(pki, CONTROL_PLANE_IP, APISERVER_PORT, host.netnsPath);
    await waitFor('kube-apiserver /readyz', 120_000, async () => {
      const r = await host.exec(['curl', '-sk', '-m', '5', '--cacert', pki.caCert, '--cert', pki.adminCert, '--key', pki.adminKey, `https://${CONTROL_PLANE_IP}:${APISERVER_PORT}/readyz`]);
      return r === 'ok';
    });

    log('CRDs: Istio and Gateway API');
    for (const f of crdFiles()) await kube.applyFile(f);
    // istiod decides at start which kinds exist: wait until they are served.
    await waitFor('CRDs established', 60_000, async () => {
      const r = await host.exec(['curl', '-sk', '-m', '5', '--cacert', pki.caCert, '--cert', pki.adminCert, '--key', pki.adminKey, `https://${CONTROL_PLANE_IP}:${APISERVER_PORT}/apis/gateway.networking.k8s.io/v1/gateways`]);
      return r.includes('"GatewayList"');
    });

    await kube.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ISTIO_NAMESPACE } });
    for (const sa of ['istiod', 'ztunnel', 'istio-cni']) await kube.apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: sa, namespace: ISTIO_NAMESPACE } });
    const cmFile = path.join(dir, 'istio-configmaps.yaml');
    fs.writeFileSync(cmFile, o.istioConfigMaps);
    await kube.applyFile(cmFile);

    log('istiod');
    const istiodDir = path.join(dir, 'istiod');
    fs.mkdirSync(istiodDir, { recursive: true });
    daemons.push(await startDaemon(host, {
      cmd: bin('pilot-discovery'), ports: [ISTIOD_XDS_PORT, 15010], timeoutMs: 120_000, logPath: logOf('istiod'), cwd: istiodDir,
      args: ['discovery', '--monitoringAddr=:15014', '--log_output_level=default:info', '--domain', 'cluster.local', '--keepaliveMaxServerConnectionAge', '30m'],
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        // What the istiod chart sets (manifests/charts/istio-control/istio-discovery/templates/deployment.yaml)
        // with the ambient profile (files/profile-ambient.yaml: PILOT_ENABLE_AMBIENT).
        REVISION: 'default', PILOT_CERT_PROVIDER: 'istiod', POD_NAME: 'istiod-lab', POD_NAMESPACE: ISTIO_NAMESPACE, SERVICE_ACCOUNT: 'istiod',
        KUBECONFIG: kubeconfig, CA_TRUSTED_NODE_ACCOUNTS: `${ISTIO_NAMESPACE}/ztunnel`, PILOT_ENABLE_ANALYSIS: 'false', CLUSTER_ID: 'Kubernetes',
        PLATFORM: '', PILOT_ENABLE_AMBIENT: 'true', GOMAXPROCS: '2', ...o.istiodEnv,
      },
    }));
    await waitFor('istiod /ready', 120_000, async () => (await host.exec(['curl', '-s', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', 'http://127.0.0.1:8080/ready'])) === '200');

    const rootCert = async (): Promise<string> => {
      let pem = '';
      await waitFor('istio-ca-root-cert', 60_000, async () => {
        try {
          const cm = await kube.core.readNamespacedConfigMap({ name: 'istio-ca-root-cert', namespace: ISTIO_NAMESPACE });
          pem = cm.data?.['root-cert.pem'] ?? '';
        } catch { pem = ''; }
        return pem.includes('BEGIN CERTIFICATE');
      });
      return pem;
    };
    return { host, kube, pki, kubeconfig, dir, logOf, rootCert, stop };
  } catch (e) {
    await stop().catch(() => undefined);
    throw e;
  }
}

async function waitFor(what: string, timeoutMs: number, cond: () => Promise<boolean>): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond().catch(() => false))) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(500);
  }
}
