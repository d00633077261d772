// SPDX-License-Identifier: Apache-2.0
// The real istio-cni node agent (install-cni with AMBIENT_ENABLED) on a lab
// node, in place of the double: it watches the API server for pods on its
// node, finds each pod's netns by its processes' cgroups (kubelet's
// .../pod<UID>/<container id> naming), installs the in-pod rules, serves
// ZDS to Skein and annotates the pod. It expects a container: /host/proc,
// /host/opt/cni/bin, /host/etc/cni/net.d and a service-account directory at
// fixed paths. It gets one of its own, without touching the machine: a
// private mount namespace whose root is an overlay of / (writes land in the
// run directory) chrooted into, in the node's netns and a cgroup of the
// lab's. Its "host" network namespace is the node's (ALLOW_SWITCH_TO_HOST_NS
// unset: istio-cni then treats its own netns as the host's).
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startDaemon, type Daemon } from '../bench/daemon.ts';
import type { Lab, LabNode, LabPod } from '../lab/index.ts';
import { cgroupPids } from '../lab/cgroup.ts';
import { bin } from './binaries.ts';
import { CgroupHost, type ControlPlane, APISERVER_PORT, CONTROL_PLANE_IP, ISTIO_NAMESPACE } from './control-plane.ts';
import type { KubeObj } from './kube.ts';

/** The istio-cni chart's default enablement selectors (manifests/charts/istio-cni/values.yaml ambient.enablementSelectors). */
const ENABLEMENT_SELECTORS = `- podSelector:
    matchLabels: {istio.io/dataplane-mode: ambient}
- podSelector:
    matchExpressions:
    - {key: istio.io/dataplane-mode, operator: NotIn, values: [none]}
  namespaceSelector:
    matchLabels: {istio.io/dataplane-mode: ambient}
`;

// Runs as: sh container.sh <dir> <install-cni> <istio-cni plugin>, inside
// `unshare -m -p --fork`: pid 1 of a pid namespace of its own, so that
// /host/proc (a procfs of that namespace) has a pid 1 whose netns is the
// node's, and holds the pods' sandboxes, which join that namespace.
const CONTAINER_SH = `set -eu
exec 1>&2 # istio-cni logs to stdout; the daemon log keeps stderr
dir=$1; agent=$2; plugin=$3
mount --make-rprivate /
mkdir -p "$dir/upper" "$dir/work" "$dir/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$dir/upper,workdir=$dir/work" "$dir/root"
for d in sys dev run; do mount --rbind "/$d" "$dir/root/$d"; done
r=$dir/root
mount -t proc proc "$r/proc"
mkdir -p "$r/host/proc" "$r/host/opt/cni/bin" "$r/host/etc/cni/net.d" "$r/opt/cni/bin" "$r/var/run/secrets/kubernetes.io/serviceaccount"
mount -t proc proc "$r/host/proc"
cp "$plugin" "$r/opt/cni/bin/istio-cni"
cp "$dir/sa/"* "$r/var/run/secrets/kubernetes.io/serviceaccount/"
# The primary CNI's config that istio-cni chains itself onto.
printf '%s' '{"cniVersion":"1.0.0","name":"lab","plugins":[{"type":"ptp"}]}' > "$r/host/etc/cni/net.d/10-lab.conflist"
exec chroot "$r" "$agent"
`;

export interface IstioCniAgent {
  /** The ZDS socket it serves (Skein's INPOD_UDS). */
  socket: string;
  /** Its pid namespace (where pod sandboxes must live for it to find them). */
  pidns: string;
  logPath: string;
  stop(): Promise<void>;
}

export async function startIstioCni(lab: Lab, node: LabNode, cp: ControlPlane, token: string): Promise<IstioCniAgent> {
  const dir = path.join(lab.dir, 'istio-cni', node.name);
  fs.mkdirSync(path.join(dir, 'sa'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'sa', 'token'), token, { mode: 0o600 });
  fs.copyFileSync(cp.pki.caCert, path.join(dir, 'sa', 'ca.crt'));
  fs.writeFileSync(path.join(dir, 'sa', 'namespace'), ISTIO_NAMESPACE);
  const script = path.join(dir, 'container.sh');
  fs.writeFileSync(script, CONTAINER_SH);
  const socket = path.join(dir, 'ztunnel.sock');
  const logPath = path.join(dir, 'istio-cni.log');
  const host = new CgroupHost(lab, node.netns, `istio-cni-${node.name}`);
  const daemon: Daemon = await startDaemon(host, {
    cmd: 'unshare', args: ['-m', '-p', '--fork', '--kill-child', '--', 'sh', script, dir, bin('install-cni'), bin('istio-cni')],
    ports: [15014], timeoutMs: 60_000, logPath,
    env: {
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      // The istio-cni chart's daemonset and ConfigMap (manifests/charts/istio-cni/templates).
      NODE_NAME: node.name, POD_NAME: `istio-cni-node-${node.name}`, POD_NAMESPACE: ISTIO_NAMESPACE,
      KUBERNETES_SERVICE_HOST: CONTROL_PLANE_IP, KUBERNETES_SERVICE_PORT: String(APISERVER_PORT),
      // Its API access: the lab's admin kubeconfig (the chart grants a ClusterRole instead).
      KUBECONFIG: cp.kubeconfig,
      AMBIENT_ENABLED: 'true', AMBIENT_ENABLEMENT_SELECTOR: ENABLEMENT_SELECTORS, AMBIENT_DNS_CAPTURE: 'true',
      AMBIENT_IPV6: 'false', AMBIENT_RECONCILE_POD_RULES_ON_STARTUP: 'false', CHAINED_CNI_PLUGIN: 'true',
      REPAIR_ENABLED: 'false', ZTUNNEL_UDS_ADDRESS: socket, LOG_LEVEL: 'info',
    },
  });
  return { socket, logPath, pidns: `/proc/${daemon.pid}/ns/pid_for_children`, stop: () => daemon.stop() };
}

/**
 * What kubelet and the runtime leave for istio-cni to find a running pod by:
 * a process in the pod's netns whose cgroup names the pod's UID and a
 * container ID (kubepods/pod<UID>/<64 hex>). A pause process, as a sandbox has.
 */
export async function startPause(lab: Lab, pod: LabPod, obj: KubeObj, agent: IstioCniAgent): Promise<void> {
  const uid = obj.metadata.uid ?? '';
  const cgroup = `kubepods/pod${uid}/${randomBytes(32).toString('hex')}`;
  const host = new CgroupHost(lab, pod.netns, cgroup);
  host.spawn('nsenter', [`--pid=${agent.pidns}`, '--', 'sleep', 'infinity'], { stdio: 'ignore' });
  // Running once `sleep` itself (nsenter's child) is in the cgroup.
  const procs = path.join(lab.cgroupDir, cgroup, 'cgroup.procs');
  const end = Date.now() + 10_000;
  const running = (): boolean => cgroupPids(path.dirname(procs)).some((pid) => {
    try { return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep'; } catch { return false; }
  });
  while (!running()) {
    if (Date.now() > end) throw new Error(`the sandbox of ${pod.name} did not start`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
