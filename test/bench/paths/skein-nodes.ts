// SPDX-License-Identifier: Apache-2.0
// Skein as a benchmark path runs it: a `skein proxy` process in each node's
// netns (static config, one shared local CA, its eBPF pins in a per-run
// bpffs directory), istio-cni's double enrolling the pods with its real
// in-pod rules. Teardown stops everything and removes the pins, also when
// the benchmark is interrupted.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanupKernel } from '@skein/ztunnel-compat/accel/index';
import { daemonEnv, nodeFlags } from '@skein/ztunnel-compat/launch';
import { CniDouble } from '../../cni/cni-double.ts';
import type { Lab, LabNode, LabPod } from '../../lab/index.ts';
import { startDaemon, type Daemon } from '../daemon.ts';
import type { ProxyProcess } from '../scenario.ts';

const MAIN = fileURLToPath(new URL('../../../ztunnel-compat/src/main.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../..', import.meta.url));

export interface SkeinNodes {
  proxies: ProxyProcess[];
  /** With `logs`: each daemon's log file (JSON lines). */
  logOf: (node: LabNode) => string;
  teardown: () => Promise<void>;
}

export interface SkeinNodesOptions {
  /** A directory name under the lab's run directory. */
  name: string;
  /** ztunnel's static config. */
  mesh: string;
  /** Nodes that run a daemon. */
  nodes: readonly LabNode[];
  /** Pods istio-cni enrolls (each on one of `nodes`). */
  enroll: readonly LabPod[];
  fastpath: 'auto' | 'off';
  /** Keep each daemon's log (JSON at info, access lines included) in a file; else errors only, in memory. */
  logs?: boolean;
  /** More environment for the daemons (say SKEIN_DNS_RESOLV_CONF). */
  env?: Readonly<Record<string, string>>;
  /**
   * Node.js flags before the script, after bin/skein's (SKEIN_NODE_FLAGS or
   * its defaults), e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` (each daemon
   * writes a profile when it stops).
   */
  nodeArgs?: readonly string[];
}

export function workloadYaml(p: LabPod, protocol: 'HBONE' | 'TCP' = 'HBONE', extra = ''): string {
  return `- {uid: Kubernetes//Pod/${p.namespace}/${p.name}, name: ${p.name}, namespace: ${p.namespace}, trustDomain: cluster.local, serviceAccount: ${p.serviceAccount}, workloadIps: ["${p.ip4}"], protocol: ${protocol}, node: ${p.node.name}${extra}${extra.includes('services:') ? '' : ', services: {}'}}\n`;
}

export async function startSkeinNodes(lab: Lab, o: SkeinNodesOptions): Promise<SkeinNodes> {
  const dir = path.join(lab.dir, o.name);
  fs.mkdirSync(dir, { recursive: true });
  const mesh = path.join(dir, 'mesh.yaml');
  fs.writeFileSync(mesh, o.mesh);
  const bpffsRoot = `/sys/fs/bpf/skein-lab-${lab.plan.runId}-${o.name}`;
  const logOf = (n: LabNode): string => path.join(dir, `${n.name}.skein.log`);
  const bpffsOf = (n: LabNode): string => path.join(bpffsRoot, n.name);
  const daemons: Daemon[] = [];
  const cnis: CniDouble[] = [];
  const enrolled: [CniDouble, LabPod][] = [];
  const cleanupPins = (): void => {
    for (const n of o.nodes) cleanupKernel(bpffsOf(n));
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
    for (const n of o.nodes) {
      const cni = new CniDouble(n, path.join(dir, `${n.name}.sock`));
      cnis.push(cni);
      // One after the other: the first generates the shared local CA. Node
      // runs as bin/skein runs it (flags, compile cache), so the figures are
      // those of the command a cluster runs.
      daemons.push(await startDaemon(n, {
        cmd: process.execPath, args: [...nodeFlags(process.env), ...(o.nodeArgs ?? []), MAIN, 'proxy'], ports: [15021], comm: 'MainThread', timeoutMs: 20_000,
        ...(o.logs === true ? { logPath: logOf(n) } : {}),
        env: {
          ...daemonEnv(process.env, ROOT), XDS_ADDRESS: '', LOCAL_XDS_PATH: mesh, FAKE_CA: 'true', SKEIN_LOCAL_CA_DIR: path.join(dir, 'ca'),
          NODE_NAME: n.name, INPOD_UDS: cni.zds.path, IPV6_ENABLED: 'false', RUST_LOG: o.logs === true ? 'info' : 'error', LOG_FORMAT: 'json',
          SKEIN_KERNEL_FASTPATH: o.fastpath, SKEIN_BPFFS_DIR: bpffsOf(n), ...o.env,
        },
      }));
      await cni.zds.waitReady(20_000);
    }
    for (const pod of o.enroll) {
      const cni = cnis[o.nodes.indexOf(pod.node)];
      if (cni === undefined) throw new Error(`no istio-cni double on ${pod.node.name}`);
      await cni.enroll(pod);
      enrolled.push([cni, pod]);
    }
    // The kernel maps are written on the turn after enrollment; let it happen.
    await new Promise((r) => setTimeout(r, 200));
    return { proxies: o.nodes.map((n, i) => ({ name: `skein-${n.name}`, pid: daemons[i]?.pid ?? 0 })), logOf, teardown };
  } catch (e) {
    await teardown();
    throw e;
  }
}
