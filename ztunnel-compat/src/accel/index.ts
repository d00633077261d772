// SPDX-License-Identifier: Apache-2.0
// The kernel fast paths as the daemon sees them: probe, load or adopt the
// pinned programs, keep the maps in step with the state and the enrolled
// pods, and turn kernel flow events into metrics and access logs. Every
// failure leaves the fast paths off and traffic on the userspace path.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Counter, Gauge, type Registry } from 'prom-client';
import { native, netnsCookieOf } from '@skein/bpf';
import type { Config } from '../config.ts';
import type { WorkloadProxyManager } from '../inpod/manager.ts';
import type { Logger } from '../log.ts';
import type { TcpMetrics } from '../proxy/metrics.ts';
import type { Service } from '../state/service.ts';
import type { ProxyState } from '../state/store.ts';
import type { Workload } from '../state/workload.ts';
import { KernelState } from './kernel.ts';
import { decideKmod, KMOD_PATH, readKmodFacts } from './kmod.ts';
import { authzKey, authzValue, decodeEvent, localKey, localValue, podKey, podValue, serviceKey, serviceValue } from './layout.ts';
import { ensureBpffs } from './bpffs.ts';
import { cgroup2Mount, decideFastpaths, offAll, readKernelFacts, type FastpathState, type FastpathStatus } from './probe.ts';
import { IdTable, project, type EnrolledPod } from './project.ts';
import { destroyClientSocket, revoked } from './revoke.ts';
import { recordKernelEvent } from './telemetry.ts';

export const DEFAULT_OBJECT = fileURLToPath(new URL('../../../bpf/build/bpf/skein.bpf.o', import.meta.url));

export interface AccelDeps {
  config: Config;
  state: ProxyState;
  pods: WorkloadProxyManager | undefined;
  metrics: TcpMetrics;
  registry: Registry;
  log: Logger;
  access: Logger;
  objectPath?: string;
  /** The kernel module path as app.ts decided it with the HBONE engine; absent: probed here, engine unknown. */
  kmod?: FastpathState;
}

interface RingBufferLike { start(): void; close(): void }

export class Accel {
  readonly status: FastpathStatus;
  /** The kernel module path (kmod/): whether the HBONE engine hands tunnels to it. */
  readonly kmod: FastpathState;
  readonly #deps: AccelDeps;
  readonly #kernel: KernelState | undefined;
  readonly #ring: RingBufferLike | undefined;
  readonly #podIds = new IdTable<{ pod: EnrolledPod; workload: Workload | undefined }>();
  readonly #serviceIds = new IdTable<{ service: Service; port: number }>();
  readonly #cookies = new Map<string, bigint>();
  /** Enrolled pods' netns fds by cookie (owned by the pod manager), for sk_lookup attachment. */
  readonly #netnsFds = new Map<bigint, number>();
  /** Pods whose pre-existing listeners were learned. */
  readonly #learned = new Set<bigint>();
  readonly #refused: Counter<'map'>;
  readonly #cgroupPath: string;
  /** The bpffs mount point this daemon mounted (none was there), for config_dump. */
  readonly #mountedBpffs: string | null;
  #scheduled = false;
  #started = false;
  #closed = false;
  #revoking: Promise<void> | undefined;
  #revokeAgain = false;
  #last = { pods: 0, services: 0, locals: 0, skipped: [] as { service: string; reason: string }[] };

  constructor(deps: AccelDeps) {
    this.#deps = deps;
    const { config, log } = deps;
    const objectPath = deps.objectPath ?? DEFAULT_OBJECT;
    const cgroupPath = config.cgroupPath ?? cgroup2Mount() ?? '/sys/fs/cgroup';
    this.#cgroupPath = cgroupPath;
    const wanted = config.proxyMode === 'shared' && config.kernelFastpath === 'auto';
    // A fresh machine has no bpffs on /sys/fs/bpf: mount one, as Cilium's agent does.
    const bpffs = wanted ? ensureBpffs(config.bpffsDir) : undefined;
    if (bpffs?.ok === true && bpffs.mounted !== undefined) {
      log.info({ scope: 'accel', mountpoint: bpffs.mounted }, `mounted a bpf filesystem at ${bpffs.mounted} (none was mounted) to pin the fast paths' programs and maps`);
    }
    this.#mountedBpffs = bpffs?.ok === true ? bpffs.mounted ?? null : null;
    let status = offAll('only in shared (in-pod) mode: there are no enrolled pods to steer');
    if (config.proxyMode === 'shared') {
      const facts = readKernelFacts({ objectPath, bpffsDir: config.bpffsDir, cgroupPath });
      status = decideFastpaths(config.kernelFastpath, bpffs?.ok === false ? { ...facts, bpffsMounted: false, bpffsWhy: bpffs.reason } : facts, config.sameNode);
    }
    let kernel: KernelState | undefined;
    let ring: RingBufferLike | undefined;
    if (status['connect-lb'].active) {
      try {
        kernel = KernelState.open({ objectPath, bpffsDir: config.bpffsDir, cgroupPath });
        const r = new native.RingBuffer(kernel.eventsFd, (data: Buffer) => { this.#onEvent(data); });
        r.start();
        ring = r;
      } catch (err) {
        kernel?.close();
        kernel = undefined;
        status = offAll(`loading the eBPF programs failed: ${(err as Error).message}`);
      }
    }
    if (kernel === undefined && fs.existsSync(config.bpffsDir)) {
      // Programs an earlier daemon pinned would go on deciding with maps
      // nobody updates (a revoked policy would still allow): off means off.
      const removed = cleanupKernel(config.bpffsDir);
      log.warn({ scope: 'accel', bpffs: config.bpffsDir, removed: removed.length }, 'kernel fast paths off: removed the programs an earlier daemon left pinned');
    }
    this.status = status;
    this.kmod = deps.kmod ?? decideKmod(config.kernelFastpath, readKmodFacts());
    this.#kernel = kernel;
    this.#ring = ring;
    const registers = [deps.registry];
    const active = new Gauge({ name: 'skein_kernel_fastpath_active', help: 'Whether a kernel fast path is active (1) or off (0); see config_dump kernelFastpaths for why', labelNames: ['path'] as const, registers });
    for (const [path, s] of Object.entries(status)) active.set({ path }, s.active ? 1 : 0);
    active.set({ path: KMOD_PATH }, this.kmod.active ? 1 : 0);
    this.#refused = new Counter({ name: 'skein_kernel_map_refused_total', help: 'Map entries the kernel refused (map full); their flows stay in userspace', labelNames: ['map'] as const, registers });
    const kernelCounters = new Counter({
      name: 'skein_kernel_connects_total', help: 'Connects seen by the kernel fast path, by what it did', labelNames: ['action'] as const, registers,
      collect: () => { this.#collect(kernelCounters); },
    });
    const line = [...Object.entries(status), [KMOD_PATH, this.kmod] as const].map(([p, s]) => `${p}: ${s.active ? 'on' : `off (${s.reason})`}`).join('; ');
    log.info({ scope: 'accel', adopted: kernel?.adopted ?? false, bpffs: config.bpffsDir, cgroup: cgroupPath }, `kernel fast paths: ${line}`);
  }

  /**
   * Starts keeping the maps in step, once the state (and, in shared mode,
   * the enrolled pods) is known. Until then adopted maps stay as the last
   * daemon left them: rewriting them from an empty state would drop every
   * pod's fast path, and close its flows, for the length of a restart.
   */
  start(note?: string): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    if (note !== undefined && this.#kernel !== undefined) this.#deps.log.warn({ scope: 'accel' }, `kernel maps follow the state from now on (${note})`);
    this.schedule();
  }

  #collect(c: Counter<'action'>): void {
    if (this.#kernel === undefined) return;
    const s = this.#kernel.stats();
    c.reset();
    c.inc({ action: 'load_balanced' }, s.lbRewrite);
    c.inc({ action: 'passthrough' }, s.passthrough);
    c.inc({ action: 'userspace_flows_full' }, s.flowsFull);
    c.inc({ action: 'userspace_no_endpoint' }, s.noEndpoint);
    c.inc({ action: 'events_lost' }, s.eventsLost);
    c.inc({ action: 'same_node' }, s.sameNode);
    c.inc({ action: 'denied' }, s.denied);
    c.inc({ action: 'same_node_admitted' }, s.admitted);
    c.inc({ action: 'same_node_no_listener' }, s.noListener);
    c.inc({ action: 'same_node_other_flow' }, s.otherFlow);
  }

  #onEvent(data: Buffer): void {
    let ev;
    try {
      ev = decodeEvent(data);
    } catch (err) {
      this.#deps.log.warn({ scope: 'accel', err: (err as Error).message }, 'bad kernel event');
      return;
    }
    recordKernelEvent({
      state: this.#deps.state, network: this.#deps.config.network, metrics: this.#deps.metrics, access: this.#deps.access,
      podOf: (id) => this.#podIds.get(id)?.workload, serviceOf: (id) => this.#serviceIds.get(id)?.service,
    }, ev);
  }

  #revokeSoon(): void {
    if (this.#revoking !== undefined) {
      this.#revokeAgain = true;
      return;
    }
    this.#revoking = this.revoke()
      .catch((err: unknown) => { this.#deps.log.warn({ scope: 'accel', err: (err as Error).message }, 'revoking same-node connections failed'); return 0; })
      .then(() => {
        this.#revoking = undefined;
        if (this.#revokeAgain && !this.#closed) {
          this.#revokeAgain = false;
          this.#revokeSoon();
        }
      });
  }

  /** Closes the same-node connections the current policies no longer allow (accel/revoke.ts). Returns how many. */
  async revoke(): Promise<number> {
    const kernel = this.#kernel;
    if (kernel === undefined || !this.status['same-node'].active) return 0;
    const enrolled = [...this.#podIds.values()];
    const byCookie = new Map(enrolled.map((p) => [p.pod.netnsCookie, p.workload]));
    const cookieByUid = new Map(enrolled.flatMap((p) => (p.workload === undefined ? [] : [[p.workload.uid, p.pod.netnsCookie] as const])));
    const view = {
      workloadByNetns: (cookie: bigint) => byCookie.get(cookie),
      netnsFdOf: (uid: string) => {
        const cookie = cookieByUid.get(uid);
        return cookie === undefined ? undefined : this.#netnsFds.get(cookie);
      },
    };
    let closed = 0;
    for (const r of revoked(this.#deps.state, this.#deps.config.network, view, kernel.approvals())) {
      try {
        await destroyClientSocket(r);
        closed++;
      } catch (err) {
        this.#deps.log.warn({ scope: 'accel', err: (err as Error).message }, 'could not close a revoked same-node connection');
      }
    }
    if (closed > 0) this.#deps.log.info({ scope: 'accel', closed }, 'closed same-node connections no longer allowed by policy');
    return closed;
  }

  /** Reprojects on the next turn of the loop; many changes, one write. */
  schedule(): void {
    if (this.#kernel === undefined || !this.#started || this.#scheduled || this.#closed) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      if (this.#closed) return;
      try {
        this.#reconcile();
      } catch (err) {
        this.#deps.log.error({ scope: 'accel', err: (err as Error).message }, 'updating the kernel maps failed');
      }
    });
  }

  #enrolled(): EnrolledPod[] {
    const running = this.#deps.pods?.running() ?? [];
    const out: EnrolledPod[] = [];
    this.#netnsFds.clear();
    const seen = new Set<string>();
    for (const p of running) {
      const key = `${p.uid}|${p.netnsFd}`;
      seen.add(key);
      let cookie = this.#cookies.get(key);
      if (cookie === undefined) {
        cookie = netnsCookieOf(p.netnsFd);
        this.#cookies.set(key, cookie);
      }
      out.push({ uid: p.uid, info: p.info, netnsCookie: cookie });
      this.#netnsFds.set(cookie, p.netnsFd);
    }
    for (const k of this.#cookies.keys()) if (!seen.has(k)) this.#cookies.delete(k);
    return out;
  }

  #reconcile(): void {
    const kernel = this.#kernel;
    if (kernel === undefined) return;
    const sameNode = this.status['same-node'].active;
    const p = project({
      state: this.#deps.state, nodeName: this.#deps.config.nodeName, network: this.#deps.config.network,
      pods: this.#enrolled(), podIds: this.#podIds, serviceIds: this.#serviceIds, sameNode: sameNode ? 'kernel' : 'hbone',
    });
    // Destinations first (their listeners' sk_lookup, policies, addresses),
    // then services, pods last: a pod is steered only once what it reaches is in.
    if (sameNode) {
      const attached = kernel.attachNetns(new Map([...p.locals.values()].map((l) => [l.netnsCookie, this.#netnsFds.get(l.netnsCookie) ?? -1])));
      for (const f of attached.failed) this.#deps.log.warn({ scope: 'accel', netns: f }, 'sk_lookup could not be attached; that pod is reached through userspace');
    }
    const written = {
      authz: kernel.reconcile('authz', [...p.authz.values()].map((a) => ({ key: authzKey(a.src, a.dst), value: authzValue(a.allowed) }))),
      local: kernel.reconcile('local', [...p.locals.values()].map((l) => ({ key: localKey(l.ip), value: localValue(l.netnsCookie, l.podId) }))),
      services: kernel.reconcile('services', [...p.services.values()].map((s) => ({ key: serviceKey(s.vip, s.port), value: serviceValue(s.value) }))),
      pods: kernel.reconcile('pods', [...p.pods.entries()].map(([cookie, x]) => ({ key: podKey(cookie), value: podValue(x.podId) }))),
    };
    for (const [map, r] of Object.entries(written)) if (r.refused > 0) this.#refused.inc({ map }, r.refused);
    // Listeners opened before the pod was enrolled; later ones the kernel learns itself.
    for (const l of p.locals.values()) {
      const fd = this.#netnsFds.get(l.netnsCookie);
      if (fd === undefined || this.#learned.has(l.netnsCookie)) continue;
      try {
        kernel.learnListeners(fd);
        this.#learned.add(l.netnsCookie);
      } catch (err) {
        this.#deps.log.warn({ scope: 'accel', pod: l.workload.name, err: (err as Error).message }, 'could not learn the pod\'s listeners; its existing ones are reached through userspace');
      }
    }
    const live = new Set([...p.locals.values()].map((l) => l.netnsCookie));
    for (const c of this.#learned) if (!live.has(c)) this.#learned.delete(c);
    // With the maps current, close what they no longer allow: after a policy
    // change, and after a restart (flows approved while no daemon ran).
    if (sameNode) this.#revokeSoon();
    this.#last = { pods: p.pods.size, services: p.services.size, locals: p.locals.size, skipped: p.skipped };
  }

  /** The config_dump section. */
  dump(): Record<string, unknown> {
    return {
      mode: this.#deps.config.kernelFastpath,
      paths: { ...this.status, [KMOD_PATH]: this.kmod },
      bpffsDir: this.#deps.config.bpffsDir,
      /** Where this daemon mounted bpffs because none was mounted; null when it found one. */
      bpffsMountedByDaemon: this.#mountedBpffs,
      cgroupPath: this.#cgroupPath,
      adopted: this.#kernel?.adopted ?? false,
      following: this.#started,
      maps: this.#kernel === undefined ? {} : {
        pods: this.#last.pods, services: this.#last.services, sameNodeDestinations: this.#last.locals, flows: this.#kernel.size('flows'),
      },
      userspaceServices: this.#last.skipped,
    };
  }

  /** Stops reading; the pinned programs and maps stay for the next daemon. */
  close(): void {
    this.#closed = true;
    this.#ring?.close();
    this.#kernel?.close();
  }
}

/** `skein proxy --cleanup`: detach and unpin everything of ours. */
export function cleanupKernel(bpffsDir: string): string[] {
  const removed = fs.existsSync(bpffsDir) ? KernelState.cleanup(bpffsDir) : [];
  // The per-node default lives in /sys/fs/bpf/skein/<node>: drop the parent once empty.
  try { fs.rmdirSync(path.dirname(bpffsDir)); } catch { /* not empty, or not ours to remove */ }
  return removed;
}
