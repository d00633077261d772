// SPDX-License-Identifier: Apache-2.0
// The per-pod proxies the node runs (ztunnel inpod/statemanager.rs): which
// pods are enrolled, in which netns, and whether their proxy is running.
// ZDS messages become calls here; starting a pod's proxy is delegated to a
// ProxyFactory so that this bookkeeping stays free of sockets.
import fs from 'node:fs';
import type { WorkloadInfo } from './protocol.ts';

/** A pod's running proxy (its listeners and connections). */
export interface PodProxy {
  /**
   * Stops accepting; open connections get `drainMs` to finish (0: closed now,
   * as when the pod leaves the mesh), then are closed.
   */
  stop(drainMs?: number): Promise<void>;
}

export interface ProxyFactory {
  /**
   * Starts the proxy of one pod inside its netns. Rejects when it cannot (a
   * bind failure, say): the error text goes back to istio-cni in the Ack.
   */
  start(uid: string, info: WorkloadInfo, netnsFd: number): Promise<PodProxy>;
}

export type PodState = 'pending' | 'running';

interface Pod {
  uid: string;
  info: WorkloadInfo;
  /** Our dup of the netns fd istio-cni sent; closed when the pod leaves. */
  netnsFd: number;
  /** The netns identity: (st_dev, st_ino). */
  netnsId: string;
  state: PodState;
  proxy: PodProxy | undefined;
  lastError: string | undefined;
  /** The start in flight: a retry or a repeated Add joins it rather than starting a second proxy. */
  starting: Promise<void> | undefined;
}

export interface PodStatus {
  uid: string;
  info: WorkloadInfo;
  state: PodState;
  lastError: string | undefined;
}

export interface ManagerOptions {
  factory: ProxyFactory;
  /** How often a pod whose proxy failed to start is retried (ztunnel: 5 s). */
  retryMs?: number;
  onChange?: () => void;
  /** Told when a pod's proxy starts and when a running one stops (the inpod metrics). */
  events?: { started(): void; stopped(): void };
}

function netnsIdOf(fd: number): string {
  const st = fs.fstatSync(fd);
  return `${st.dev}:${st.ino}`;
}

export class WorkloadProxyManager {
  readonly #pods = new Map<string, Pod>();
  readonly #factory: ProxyFactory;
  readonly #retryMs: number;
  readonly #onChange: (() => void) | undefined;
  readonly #events: ManagerOptions['events'];
  #retryTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(o: ManagerOptions) {
    this.#factory = o.factory;
    this.#retryMs = o.retryMs ?? 5000;
    this.#onChange = o.onChange;
    this.#events = o.events;
  }

  /** Pods whose proxy is not running yet (for readiness). */
  get pending(): number {
    return [...this.#pods.values()].filter((p) => p.state === 'pending').length;
  }

  status(): PodStatus[] {
    return [...this.#pods.values()].map((p) => ({ uid: p.uid, info: p.info, state: p.state, lastError: p.lastError }));
  }

  /** Pods whose proxy runs, with their netns fd (ours, valid while the pod is enrolled). */
  running(): { uid: string; info: WorkloadInfo; netnsFd: number }[] {
    return [...this.#pods.values()].filter((p) => p.state === 'running').map((p) => ({ uid: p.uid, info: p.info, netnsFd: p.netnsFd }));
  }

  has(uid: string): boolean {
    return this.#pods.has(uid);
  }

  /**
   * Add: takes ownership of `netnsFd`. Idempotent for the same pod in the
   * same netns; a new netns replaces the old proxy. Rejects with the start
   * error (the pod stays, pending, and is retried).
   */
  async add(uid: string, info: WorkloadInfo, netnsFd: number): Promise<void> {
    let id: string;
    try {
      id = netnsIdOf(netnsFd);
    } catch (err) {
      fs.closeSync(netnsFd);
      throw err;
    }
    const old = this.#pods.get(uid);
    if (old !== undefined && old.netnsId === id) {
      fs.closeSync(netnsFd);
      old.info = info;
      if (old.state === 'running') return;
      await this.#start(old);
      return;
    }
    if (old !== undefined) await this.#remove(old);
    const pod: Pod = { uid, info, netnsFd, netnsId: id, state: 'pending', proxy: undefined, lastError: undefined, starting: undefined };
    this.#pods.set(uid, pod);
    await this.#start(pod);
  }

  /** Del: drains the pod's proxy and forgets it. */
  async del(uid: string): Promise<void> {
    const pod = this.#pods.get(uid);
    if (pod !== undefined) await this.#remove(pod);
  }

  /** After a snapshot: drains every pod the snapshot did not name. */
  async retainOnly(uids: ReadonlySet<string>): Promise<string[]> {
    const gone = [...this.#pods.values()].filter((p) => !uids.has(p.uid));
    for (const p of gone) await this.#remove(p);
    return gone.map((p) => p.uid);
  }

  /** Shutdown: every pod's proxy drains at once, for up to `drainMs`. */
  async close(drainMs = 0): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    await Promise.all([...this.#pods.values()].map((p) => this.#remove(p, drainMs)));
  }

  #start(pod: Pod): Promise<void> {
    pod.starting ??= this.#startOnce(pod).finally(() => { pod.starting = undefined; });
    return pod.starting;
  }

  async #startOnce(pod: Pod): Promise<void> {
    try {
      const proxy = await this.#factory.start(pod.uid, pod.info, pod.netnsFd);
      if (this.#pods.get(pod.uid) !== pod) {
        // Deleted while starting.
        await proxy.stop();
        return;
      }
      pod.proxy = proxy;
      pod.state = 'running';
      pod.lastError = undefined;
      this.#events?.started();
      this.#onChange?.();
    } catch (err) {
      pod.state = 'pending';
      pod.lastError = (err as Error).message;
      this.#scheduleRetry();
      this.#onChange?.();
      throw err;
    }
  }

  #scheduleRetry(): void {
    if (this.#retryTimer !== undefined || this.#closed) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      for (const p of this.#pods.values()) {
        if (p.state === 'pending') this.#start(p).catch(() => undefined);
      }
    }, this.#retryMs);
    this.#retryTimer.unref();
  }

  async #remove(pod: Pod, drainMs = 0): Promise<void> {
    this.#pods.delete(pod.uid);
    try {
      if (pod.proxy !== undefined) {
        await pod.proxy.stop(drainMs);
        this.#events?.stopped();
      }
    } finally {
      fs.closeSync(pod.netnsFd);
      this.#onChange?.();
    }
  }
}
