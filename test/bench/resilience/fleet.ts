// SPDX-License-Identifier: Apache-2.0
// The resilience lab: two nodes with two pods each, one `skein proxy` per
// node, and an echo server in each server pod. From the client pod (node0
// pod0) three data paths:
//   hbone        → node1 pod0's own address: captured, HBONE across nodes
//   fastpath     → a service VIP whose endpoint is node0 pod1 (enrolled):
//                  decided at connect() by the kernel, no proxy on the path
//   passthrough  → node1 pod1, a pod outside the mesh: Skein relays plain TCP
// A node's daemon can be replaced as a DaemonSet rollout with maxSurge does:
// the new one is started (in its own netns, as a new ztunnel pod gets one)
// and has taken the pods over through ZDS before the old one gets SIGTERM.
import { execFileSync, spawn, type SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanupKernel } from '@skein/ztunnel-compat/accel/index';
import { daemonEnv, nodeFlags } from '@skein/ztunnel-compat/launch';
import { CniDouble } from '../../cni/cni-double.ts';
import { Lab, LAB_PREFIX, type LabNode, type LabPod } from '../../lab/index.ts';
import { startDaemon, type Daemon, type DaemonHost } from '../daemon.ts';
import { workloadYaml } from '../paths/skein-nodes.ts';
import { ipBytes, type IstiodLink } from './istiod-link.ts';
import type { Target } from './peer.ts';

const MAIN = fileURLToPath(new URL('../../../ztunnel-compat/src/main.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
export const PEER = fileURLToPath(new URL('./peer.ts', import.meta.url));
export const ECHO_PORT = 9000;
/** Where the server pods accept and never answer. */
export const SILENT_PORT = 9001;
export const SERVICE_VIP = '10.96.0.81';
/** The drain deadline the daemons get (CONNECTION_TERMINATION_DEADLINE). */
export const DRAIN_MS = 3000;
/**
 * Open files the harness gives the daemons, the echo servers and the load
 * generator: 10,000 relayed connections need 20,000 sockets in a daemon.
 * Raising a hard limit needs CAP_SYS_RESOURCE, which a container may lack;
 * then they keep ours, and the soak reports the limit they had.
 */
export const WANT_NOFILE = 65_536;
let raisable: boolean | undefined;
/** `cmd args` run under a hard and soft open-files limit of WANT_NOFILE, when we may set one. */
export function withNofile(cmd: string, args: readonly string[]): [string, string[]] {
  if (raisable === undefined) {
    try {
      execFileSync('prlimit', [`--nofile=${WANT_NOFILE}:${WANT_NOFILE}`, 'true'], { stdio: 'ignore' });
      raisable = true;
    } catch {
      raisable = false;
    }
  }
  return raisable ? ['prlimit', [`--nofile=${WANT_NOFILE}:${WANT_NOFILE}`, '--', cmd, ...args]] : [cmd, [...args]];
}

/** The soft open-files limit of a process (this one by default). */
export function nofileLimit(pid: number | 'self' = 'self'): number {
  const m = /^Max open files\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/limits`, 'utf8'));
  return Number(m?.[1] ?? NaN);
}

export interface Fleet {
  lab: Lab;
  client: LabPod;
  targets: Target[];
  nodes: LabNode[];
  /** The current daemon of each node. */
  pid(node: LabNode): number;
  /** Where the current daemon of a node runs (its admin ports). */
  hostOf(node: LabNode): DaemonHost;
  cni(node: LabNode): CniDouble;
  /** The istiod double and its link, when the fleet was started with one. */
  istiod: IstiodLink | undefined;
  logs(): string;
  /** SIGKILL to a node's daemon (a crash); resolves once it is gone. */
  kill(node: LabNode): Promise<void>;
  /** Starts a new daemon on a node whose daemon is gone (the DaemonSet restarting it). */
  restart(node: LabNode): Promise<void>;
  pods: { client: LabPod; same: LabPod; far: LabPod; outside: LabPod };
  /** Replaces a node's daemon (new first, then SIGTERM to the old); resolves when the old one has exited. */
  replace(node: LabNode): Promise<{ oldExitMs: number; sigtermAt: number }>;
  teardown(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A bare network namespace (loopback only) for a surge daemon; named like the lab's, so a crashed run's is swept. */
function surgeHost(lab: Lab, name: string): DaemonHost & { remove(): void } {
  execFileSync('ip', ['netns', 'add', name]);
  execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  const nsPath = `/run/netns/${name}`;
  return {
    netns: name,
    spawn: (cmd: string, args: readonly string[], options: SpawnOptions) => {
      const child = spawn('nsenter', [`--net=${nsPath}`, '--', cmd, ...args], options);
      lab.track(child);
      return child;
    },
    run: (cmd: string, ...args: string[]) => execFileSync('ip', ['netns', 'exec', name, cmd, ...args], { encoding: 'utf8' }),
    remove: () => { try { execFileSync('ip', ['netns', 'del', name]); } catch { /* already gone */ } },
  };
}

function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/**
 * `istiod`: the daemons take workloads and certificates from the istiod
 * double (through the link) instead of a static file and their own local CA.
 */
export async function startFleet(log: (line: string) => void, env: Readonly<Record<string, string>> = {}, istiod?: (lab: Lab) => Promise<IstiodLink>): Promise<Fleet> {
  const lab = Lab.create({ nodes: 2, podsPerNode: 2 });
  let link: IstiodLink | undefined;
  const surges: ReturnType<typeof surgeHost>[] = [];
  const cnis: CniDouble[] = [];
  const daemons = new Map<LabNode, { daemon: Daemon; host: DaemonHost }>();
  const dir = path.join(lab.dir, 'resilience');
  fs.mkdirSync(dir, { recursive: true });
  const bpffsRoot = `/sys/fs/bpf/skein-lab-${lab.plan.runId}-resilience`;
  const cleanupPins = (): void => {
    for (const n of lab.nodes) cleanupKernel(path.join(bpffsRoot, n.name));
    fs.rmSync(bpffsRoot, { recursive: true, force: true });
  };
  process.once('exit', cleanupPins);
  const teardown = async (): Promise<void> => {
    for (const { daemon } of daemons.values()) await daemon.stop().catch(() => undefined);
    process.off('exit', cleanupPins);
    cleanupPins();
    for (const c of cnis) c.close();
    await link?.close();
    lab.teardown();
    for (const s of surges) s.remove();
  };
  try {
    const [n0, n1] = lab.nodes as [LabNode, LabNode];
    const client = n0.pods[0] as LabPod;
    const same = n0.pods[1] as LabPod;
    const far = n1.pods[0] as LabPod;
    const outside = n1.pods[1] as LabPod;
    for (const p of [same, far, outside]) {
      const [cmd, args] = withNofile(process.execPath, [PEER, 'serve', p.ip4, String(ECHO_PORT)]);
      await startDaemon(p, { cmd, args, ports: [ECHO_PORT], comm: 'MainThread', timeoutMs: 20_000 });
      await startDaemon(p, { cmd: process.execPath, args: [PEER, 'blackhole', p.ip4, String(SILENT_PORT)], ports: [SILENT_PORT], comm: 'MainThread', timeoutMs: 20_000 });
    }
    const svc = 'echo.default.svc.cluster.local';
    const mesh = path.join(dir, 'mesh.yaml');
    let source: Record<string, string> = { XDS_ADDRESS: '', LOCAL_XDS_PATH: mesh, FAKE_CA: 'true', SKEIN_LOCAL_CA_DIR: path.join(dir, 'ca') };
    if (istiod === undefined) {
      fs.writeFileSync(mesh, `workloads:
${workloadYaml(client)}${workloadYaml(far)}${workloadYaml(same, 'HBONE', `, services: {default/${svc}: {80: ${ECHO_PORT}}}`)}services:
- {name: echo, namespace: default, hostname: ${svc}, vips: ["/${SERVICE_VIP}"], ports: {80: ${ECHO_PORT}}}
`);
    } else {
      // The same mesh, as istiod sends it.
      link = await istiod(lab);
      link.publish(client);
      link.publish(far);
      link.publish(same, { [`default/${svc}`]: [{ servicePort: 80, targetPort: ECHO_PORT }] });
      link.publishService({ name: 'echo', namespace: 'default', hostname: svc, addresses: [{ network: '', address: ipBytes(SERVICE_VIP) }], ports: [{ servicePort: 80, targetPort: ECHO_PORT }] });
      source = {};
    }
    let generation = 0;
    const start = async (n: LabNode, host: DaemonHost): Promise<Daemon> => {
      const cni = cnis[n.index];
      if (cni === undefined) throw new Error(`no istio-cni double on ${n.name}`);
      const before = cni.zds.readyConnections;
      if (link !== undefined) {
        await link.expose(`/run/netns/${host.netns}`);
        source = link.env(n);
      }
      // Node as bin/skein runs it (flags, compile cache).
      const [cmd, args] = withNofile(process.execPath, [...nodeFlags(process.env), MAIN, 'proxy']);
      const d = await startDaemon(host, {
        cmd, args, ports: [15021], comm: 'MainThread', timeoutMs: 20_000,
        logPath: path.join(dir, `${n.name}.${generation++}.skein.log`),
        env: {
          ...daemonEnv(process.env, ROOT), ...source,
          NODE_NAME: n.name, INPOD_UDS: cni.zds.path, IPV6_ENABLED: 'false', RUST_LOG: 'warn', LOG_FORMAT: 'json',
          SKEIN_KERNEL_FASTPATH: 'auto', SKEIN_BPFFS_DIR: path.join(bpffsRoot, n.name), CONNECTION_TERMINATION_DEADLINE: `${DRAIN_MS / 1000}s`, ...env,
        },
      });
      // Ready means: this daemon finished its ZDS snapshot (it holds every pod's listeners).
      const deadline = Date.now() + 20_000;
      while (cni.zds.readyConnections <= before) {
        if (Date.now() > deadline) throw new Error(`${n.name}: the new daemon did not finish its ZDS snapshot`);
        await sleep(25);
      }
      return d;
    };
    for (const n of lab.nodes) {
      cnis.push(new CniDouble(n, path.join(dir, `${n.name}.sock`)));
      daemons.set(n, { daemon: await start(n, n), host: n });
    }
    for (const p of [client, same, far]) await cnis[p.node.index]?.enroll(p);
    await sleep(300);
    log(`resilience: lab ${lab.plan.runId} up, daemons on ${lab.nodes.map((n) => n.name).join(', ')}`);
    const get = (n: LabNode): { daemon: Daemon; host: DaemonHost } => {
      const d = daemons.get(n);
      if (d === undefined) throw new Error(`no daemon on ${n.name}`);
      return d;
    };
    return {
      lab, client, nodes: lab.nodes, pods: { client, same, far, outside },
      targets: [
        { name: 'hbone', host: far.ip4, port: ECHO_PORT },
        { name: 'fastpath', host: SERVICE_VIP, port: 80 },
        { name: 'passthrough', host: outside.ip4, port: ECHO_PORT },
      ],
      pid: (n) => get(n).daemon.pid,
      hostOf: (n) => get(n).host,
      cni: (n) => cnis[n.index] as CniDouble,
      istiod: link,
      logs: () => fs.readdirSync(dir).filter((f) => f.endsWith('.skein.log')).map((f) => fs.readFileSync(path.join(dir, f), 'utf8')).join(''),
      async kill(n) {
        const pid = get(n).daemon.pid;
        process.kill(pid, 'SIGKILL');
        while (alive(pid)) await sleep(10);
      },
      async restart(n) {
        const host = surgeHost(lab, `${LAB_PREFIX}${lab.plan.runId}-s${surges.length}`);
        surges.push(host);
        daemons.set(n, { daemon: await start(n, host), host });
      },
      async replace(n) {
        const old = get(n);
        const host = surgeHost(lab, `${LAB_PREFIX}${lab.plan.runId}-s${surges.length}`);
        surges.push(host);
        const next = await start(n, host);
        daemons.set(n, { daemon: next, host });
        const t0 = performance.now();
        const sigtermAt = Date.now();
        process.kill(old.daemon.pid, 'SIGTERM');
        const deadline = Date.now() + DRAIN_MS + 10_000;
        while (alive(old.daemon.pid)) {
          if (Date.now() > deadline) { process.kill(old.daemon.pid, 'SIGKILL'); throw new Error(`${n.name}: the old daemon did not exit within the drain deadline + 10 s`); }
          await sleep(20);
        }
        return { oldExitMs: Math.round(performance.now() - t0), sigtermAt };
      },
      teardown,
    };
  } catch (e) {
    await teardown();
    throw e;
  }
}
