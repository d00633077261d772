// SPDX-License-Identifier: Apache-2.0
// The lab: one Linux machine playing a cluster. A fabric namespace holds a
// bridge; each node is a namespace with a veth on it; each pod is a namespace
// with a point-to-point veth to its node, as a routed CNI would set it up.
// Nothing routes out of the lab: there is no uplink and no default route.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { cgroupPids, createCgroup, labCgroupBase, removeCgroup } from './cgroup.ts';
import { LAB_CIDRS, planLab, type LabPlan, type LabSpec, type NodePlan, type PodPlan } from './plan.ts';
import { register, runDir, sweepLeftovers, unregister } from './registry.ts';
import { inNetns, ipBatch } from './sh.ts';

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  input?: string;
  /** Kill the process after this many ms (default 30 s): every run is bounded. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

/**
 * The environment of a process in the lab: the caller's, without the user's
 * shell start-up files. bash sources ~/.bashrc when its stdin is a socket, as
 * Node's pipes are, and SHLVL is low, as under CI; a heavy .bashrc (pyenv
 * here) made each `bash -c` in a pod take ~100 ms, and the suite time out.
 */
function labEnv(env: NodeJS.ProcessEnv, home: string): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...env, HOME: home };
  delete out.BASH_ENV;
  delete out.ENV;
  return out;
}

/** Something processes can run in: a node or a pod. */
abstract class Host {
  readonly netns: string;
  readonly netnsPath: string;
  readonly ip4: string;
  readonly ip6: string;
  protected readonly lab: Lab;

  constructor(lab: Lab, netns: string, ip4: string, ip6: string) {
    this.lab = lab;
    this.netns = netns;
    this.netnsPath = `/run/netns/${netns}`;
    this.ip4 = ip4;
    this.ip6 = ip6;
  }

  /** The cgroup new processes join, if any. */
  protected abstract cgroup(): string | undefined;

  /** Starts a process inside this host's netns (and cgroup); the lab kills it at teardown. */
  spawn(cmd: string, args: readonly string[] = [], options: SpawnOptions = {}): ChildProcess {
    const cg = this.cgroup();
    // The wrapper joins the cgroup before exec, so the process and all its
    // children are accounted there from their first instruction.
    const script = 'cg=$1; ns=$2; shift 2; if [ -n "$cg" ]; then echo $$ > "$cg/cgroup.procs" || exit 111; fi; exec nsenter --net="$ns" -- "$@"';
    const child = spawn('sh', ['-c', script, 'skein-lab', cg ?? '', this.netnsPath, cmd, ...args], { ...options, env: labEnv(options.env ?? process.env, this.lab.dir) });
    this.lab.track(child);
    return child;
  }

  /** Runs a command to completion inside this host. */
  exec(cmd: string, args: readonly string[] = [], options: ExecOptions = {}): Promise<ExecResult> {
    const child = this.spawn(cmd, args, { env: options.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (d: Buffer) => out.push(d));
    child.stderr?.on('data', (d: Buffer) => err.push(d));
    // A process may exit before reading its input; that is not an error here.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(options.input ?? '');
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    return new Promise((resolve, reject) => {
      child.once('error', (e) => { clearTimeout(timer); reject(e); });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
      });
    });
  }

  /** Runs a short command synchronously (ip, iptables, sysctl); throws on failure. */
  run(cmd: string, ...args: string[]): string {
    return inNetns(this.netns, cmd, args);
  }
}

export class LabNode extends Host {
  readonly name: string;
  readonly index: number;
  readonly pods: LabPod[] = [];
  readonly plan: NodePlan;

  constructor(lab: Lab, plan: NodePlan) {
    super(lab, plan.netns, plan.ip4, plan.ip6);
    this.name = plan.name;
    this.index = plan.index;
    this.plan = plan;
  }

  protected cgroup(): undefined {
    return undefined;
  }
}

export class LabPod extends Host {
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly uid: string;
  readonly node: LabNode;
  readonly cgroupPath: string;

  constructor(lab: Lab, node: LabNode, plan: PodPlan, cgroupPath: string) {
    super(lab, plan.netns, plan.ip4, plan.ip6);
    this.name = plan.name;
    this.namespace = plan.namespace;
    this.serviceAccount = plan.serviceAccount;
    this.uid = plan.uid;
    this.node = node;
    this.cgroupPath = cgroupPath;
  }

  protected cgroup(): string {
    return this.cgroupPath;
  }

  /** Pids of the processes in this pod's cgroup. */
  pids(): number[] {
    return cgroupPids(this.cgroupPath);
  }
}

export class Lab {
  readonly plan: LabPlan;
  readonly nodes: LabNode[] = [];
  readonly cgroupDir: string;
  readonly #children = new Set<ChildProcess>();
  #torndown = false;
  readonly #onExit = (): void => { this.teardown(); };

  /**
   * Validates the spec (refusing it before touching anything), removes what
   * crashed runs left behind, and builds the lab. Teardown is registered for
   * process exit too, but call `teardown()` yourself.
   */
  static create(spec: LabSpec): Lab {
    const runId = randomBytes(3).toString('hex');
    const plan = planLab(spec, runId);
    if (process.getuid?.() !== 0) throw new Error('the lab needs root (network namespaces, iptables, cgroups)');
    sweepLeftovers();
    const lab = new Lab(plan);
    try {
      lab.#build();
    } catch (err) {
      lab.teardown();
      throw err;
    }
    return lab;
  }

  private constructor(plan: LabPlan) {
    this.plan = plan;
    this.cgroupDir = path.join(labCgroupBase(), plan.runId);
    for (const np of plan.nodes) {
      const node = new LabNode(this, np);
      for (const pp of np.pods) node.pods.push(new LabPod(this, node, pp, path.join(this.cgroupDir, pp.netns)));
      this.nodes.push(node);
    }
    process.once('exit', this.#onExit);
  }

  /** Scratch directory of this run (sockets, configs); removed at teardown. */
  get dir(): string {
    return runDir(this.plan.runId);
  }

  get pods(): LabPod[] {
    return this.nodes.flatMap((n) => n.pods);
  }

  pod(name: string): LabPod {
    const p = this.pods.find((x) => x.name === name);
    if (p === undefined) throw new Error(`no pod named '${name}' in this lab`);
    return p;
  }

  /** Every namespace this lab created, pods first (teardown order). */
  get netnsNames(): string[] {
    return [...this.pods.map((p) => p.netns), ...this.nodes.map((n) => n.netns), this.plan.fabricNetns];
  }

  track(child: ChildProcess): void {
    this.#children.add(child);
    child.once('exit', () => this.#children.delete(child));
  }

  #build(): void {
    const { plan } = this;
    register(plan.runId, this.cgroupDir);
    ipBatch(null, this.netnsNames.map((n) => `netns add ${n}`).reverse());

    const fab = plan.fabricNetns;
    ipBatch(fab, [
      'link set lo up',
      'link add br0 type bridge',
      'link set br0 up',
      ...plan.nodes.flatMap((n) => [
        `link add n${n.index} type veth peer name eth0 netns ${n.netns}`,
        `link set n${n.index} master br0`,
        `link set n${n.index} up`,
      ]),
    ]);

    for (const n of plan.nodes) {
      ipBatch(n.netns, [
        'link set lo up',
        `addr add ${n.ip4}/24 dev eth0`,
        `addr add ${n.ip6}/64 dev eth0 nodad`,
        'link set eth0 up',
        ...plan.nodes.filter((o) => o !== n).flatMap((o) => [
          `route add ${o.podCidr4} via ${o.ip4} dev eth0`,
          `route add ${o.podCidr6} via ${o.ip6} dev eth0`,
        ]),
        ...n.pods.flatMap((p) => [
          `link add ${p.nodeIfname} type veth peer name eth0 netns ${p.netns}`,
          `addr add ${n.gateway4}/32 dev ${p.nodeIfname}`,
          `addr add ${n.gateway6}/128 dev ${p.nodeIfname} nodad`,
          `link set ${p.nodeIfname} up`,
          `route add ${p.ip4}/32 dev ${p.nodeIfname}`,
          `route add ${p.ip6}/128 dev ${p.nodeIfname}`,
        ]),
      ]);
      // A node forwards between its pods and the fabric, like any CNI node.
      inNetns(n.netns, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0']);

      for (const p of n.pods) {
        ipBatch(p.netns, [
          'link set lo up',
          `addr add ${p.ip4}/32 dev eth0`,
          `addr add ${p.ip6}/128 dev eth0 nodad`,
          'link set eth0 up',
          `route add ${n.gateway4}/32 dev eth0 scope link`,
          `route add ${n.gateway6}/128 dev eth0`,
          // Routes to the lab's own ranges only: no default route in a pod.
          `route add ${LAB_CIDRS.pod4} via ${n.gateway4} dev eth0 src ${p.ip4}`,
          `route add ${LAB_CIDRS.node4} via ${n.gateway4} dev eth0 src ${p.ip4}`,
          `route add ${LAB_CIDRS.pod6} via ${n.gateway6} dev eth0 src ${p.ip6}`,
          `route add ${LAB_CIDRS.node6} via ${n.gateway6} dev eth0 src ${p.ip6}`,
          `route add ${LAB_CIDRS.service4} via ${n.gateway4} dev eth0 src ${p.ip4}`,
          `route add ${LAB_CIDRS.service6} via ${n.gateway6} dev eth0 src ${p.ip6}`,
        ]);
        createCgroup(path.join(this.cgroupDir, p.netns));
      }
    }
  }

  /** Kills every process the lab started, removes cgroups and namespaces. Idempotent. */
  teardown(): void {
    if (this.#torndown) return;
    this.#torndown = true;
    process.off('exit', this.#onExit);
    for (const child of this.#children) {
      if (child.pid !== undefined && child.exitCode === null) {
        try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
      }
    }
    this.#children.clear();
    const errors: string[] = [];
    try { removeCgroup(this.cgroupDir); } catch (e) { errors.push((e as Error).message); }
    // The shared parent goes too once the last concurrent lab is gone.
    try { fs.rmdirSync(path.dirname(this.cgroupDir)); } catch { /* another lab still uses it */ }
    try {
      ipBatch(null, this.netnsNames.filter((n) => existsNetns(n)).map((n) => `netns del ${n}`));
    } catch (e) { errors.push((e as Error).message); }
    unregister(this.plan.runId);
    if (errors.length > 0) throw new Error(`lab teardown incomplete: ${errors.join('; ')}`);
  }
}

function existsNetns(name: string): boolean {
  // /run/netns/<name> exists while the namespace is named.
  return fs.existsSync(`/run/netns/${name}`);
}
