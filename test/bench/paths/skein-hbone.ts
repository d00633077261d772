// SPDX-License-Identifier: Apache-2.0
// Skein's HBONE path: a `skein proxy` process in each node's netns (static
// config, one shared local CA), istio-cni's double enrolling the client and
// server pods with its real in-pod rules. The client dials the server pod's
// own address; istio-cni's rules capture it to Skein on node0, which carries
// it over mTLS + HTTP/2 CONNECT to Skein on node1's 15008 and on to the pod.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanupKernel } from '@skein/ztunnel-compat/accel/index';
import { CniDouble } from '../../cni/cni-double.ts';
import type { LabNode, LabPod } from '../../lab/index.ts';
import { startDaemon, type Daemon } from '../daemon.ts';
import type { ActivePath, BenchEnv, BenchPath } from '../scenario.ts';

const MAIN = fileURLToPath(new URL('../../../ztunnel-compat/src/main.ts', import.meta.url));

function workload(p: LabPod): string {
  return `- {uid: Kubernetes//Pod/${p.namespace}/${p.name}, name: ${p.name}, namespace: ${p.namespace}, serviceAccount: ${p.serviceAccount}, workloadIps: ["${p.ip4}"], protocol: HBONE, node: ${p.node.name}}\n`;
}

async function setup(env: BenchEnv): Promise<ActivePath> {
  const near = env.client.node;
  const far = env.server.pod.node;
  const dir = path.join(env.lab.dir, 'skein-hbone');
  fs.mkdirSync(dir, { recursive: true });
  const mesh = path.join(dir, 'mesh.yaml');
  fs.writeFileSync(mesh, `workloads:\n${workload(env.client)}${workload(env.server.pod)}`);

  // The daemons' pinned eBPF state, per lab run, removed at teardown.
  const bpffsRoot = `/sys/fs/bpf/skein-lab-${env.lab.plan.runId}`;
  const bpffsOf = (n: LabNode): string => path.join(bpffsRoot, n.name);
  const daemons: Daemon[] = [];
  const cnis: CniDouble[] = [];
  const enrolled: [CniDouble, LabPod][] = [];
  const cleanupPins = (): void => {
    for (const n of [near, far]) cleanupKernel(bpffsOf(n));
    fs.rmSync(bpffsRoot, { recursive: true, force: true });
  };
  // Also on Ctrl-C, which leaves through process.exit.
  process.once('exit', cleanupPins);
  const teardown = async (): Promise<void> => {
    for (const [cni, pod] of enrolled) await cni.unenroll(pod).catch(() => undefined);
    await Promise.all(daemons.map((d) => d.stop()));
    process.off('exit', cleanupPins);
    cleanupPins();
    for (const c of cnis) c.close();
  };
  try {
    const nodes: LabNode[] = near === far ? [near] : [near, far];
    for (const n of nodes) {
      const cni = new CniDouble(n, path.join(dir, `${n.name}.sock`));
      cnis.push(cni);
      // One after the other: the first generates the shared local CA.
      daemons.push(await startDaemon(n, {
        cmd: process.execPath,
        args: [MAIN, 'proxy'],
        ports: [15021],
        comm: 'MainThread',
        timeoutMs: 15_000,
        env: {
          ...process.env, XDS_ADDRESS: '', LOCAL_XDS_PATH: mesh, FAKE_CA: 'true', SKEIN_LOCAL_CA_DIR: path.join(dir, 'ca'),
          NODE_NAME: n.name, INPOD_UDS: cni.zds.path, IPV6_ENABLED: 'false', RUST_LOG: 'error', SKEIN_BPFFS_DIR: bpffsOf(n),
        },
      }));
      await cni.zds.waitReady(15_000);
    }
    const cniOf = (n: LabNode): CniDouble => cnis[nodes.indexOf(n)] ?? (() => { throw new Error(`no istio-cni double on ${n.name}`); })();
    for (const pod of [env.client, env.server.pod]) {
      await cniOf(pod.node).enroll(pod);
      enrolled.push([cniOf(pod.node), pod]);
    }
    return {
      targets: { http: env.server.http, bulk: env.server.bulk },
      proxies: nodes.map((n, i) => ({ name: `skein-${n.name}`, pid: daemons[i]?.pid ?? 0 })),
      teardown,
    };
  } catch (e) {
    await teardown();
    throw e;
  }
}

export const skeinHbone: BenchPath = {
  name: 'skein-hbone',
  description: 'client pod → Skein (client node, :15001) → HBONE mTLS + HTTP/2 CONNECT → Skein (server node, :15008) → server pod',
  setup,
};
