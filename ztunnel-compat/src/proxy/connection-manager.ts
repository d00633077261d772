// SPDX-License-Identifier: Apache-2.0
// Inbound connections, kept so that a policy change can re-check them
// (ztunnel proxy/connection_manager.rs): a connection the new policies no
// longer allow is closed. As ztunnel's assert_rbac, a connection is
// registered before it is authorized and stays registered through its
// upstream connect, so a DENY that arrives while the app is being dialled
// closes it too. Outbound connections are listed too, so that config_dump
// shows each pod's connections both ways, as ztunnel's workloadState does
// (istioctl's configdump InboundConnection and OutboundConnection).
import { authorize, type AuthzRequest, type AuthzVerdict } from '../decide/authz.ts';
import type { ProxyState } from '../state/store.ts';
import { ChurnTable } from './churn-table.ts';

/** A connection as config_dump lists it. */
export interface ConnectionView {
  /** The client's ip:port. */
  readonly src: string;
  /** What the client addressed: ip:port outbound; inbound, the service hostname it named, if any. */
  readonly originalDst: string | null;
  /** What was dialled: the HBONE peer's ip:15008, or the app's ip:port. */
  readonly actualDst: string;
  readonly protocol: 'HBONE' | 'TCP';
}

export interface TrackedConnection {
  /** The destination workload's uid: its policies are looked up afresh. */
  readonly destinationUid: string;
  readonly request: AuthzRequest;
  /** The enrolled pod (ZDS uid) it came in to, and how config_dump shows it. */
  readonly pod?: { uid: string; view: ConnectionView };
  close(reason: string): void;
}

export interface PodConnections { inbound: ConnectionView[]; outbound: ConnectionView[] }

export type Admission =
  | { allowed: true; /** Stops tracking (the connection ended). */ release: () => void }
  | { allowed: false; reason: string };

export class ConnectionManager {
  readonly #state: ProxyState;
  // One entry per connection: ChurnTables, not Sets (churn-table.ts).
  readonly #conns = new ChurnTable<TrackedConnection>();
  readonly #outbound = new ChurnTable<{ podUid: string; view: ConnectionView }>();

  constructor(state: ProxyState) {
    this.#state = state;
  }

  get size(): number {
    return this.#conns.size;
  }

  /** Tracks a connection until the returned function is called. */
  register(c: TrackedConnection): () => void {
    const key = this.#conns.add(c);
    return () => { this.#conns.delete(key); };
  }

  /** Lists an outbound connection of pod `podUid` until the returned function is called. */
  registerOutbound(podUid: string, view: ConnectionView): () => void {
    const key = this.#outbound.add({ podUid, view });
    return () => { this.#outbound.delete(key); };
  }

  /** A pod's open connections, both ways (config_dump's workloadState[uid].connections). */
  byPod(podUid: string): PodConnections {
    const out: PodConnections = { inbound: [], outbound: [] };
    for (const c of this.#conns.values()) if (c.pod?.uid === podUid) out.inbound.push(c.pod.view);
    for (const c of this.#outbound.values()) if (c.podUid === podUid) out.outbound.push(c.view);
    return out;
  }

  /**
   * Registers `c`, then authorizes it against the destination's current
   * policies (ztunnel's assert_rbac order); a denied connection is not kept.
   * From here until `release`, a policy change that denies it calls its `close`.
   */
  admit(c: TrackedConnection): Admission {
    const key = this.#conns.add(c);
    const verdict = this.#verdict(c);
    if (!verdict.allowed) {
      this.#conns.delete(key);
      return { allowed: false, reason: verdict.reason };
    }
    return { allowed: true, release: () => { this.#conns.delete(key); } };
  }

  /** Re-authorizes every tracked connection; closes the denied ones. */
  recheck(): number {
    let closed = 0;
    for (const key of this.#conns.keys()) {
      const c = this.#conns.get(key);
      if (c === undefined) continue; // released by a close before it
      const verdict = this.#verdict(c);
      if (!verdict.allowed) {
        this.#conns.delete(key);
        c.close(verdict.reason);
        closed++;
      }
    }
    return closed;
  }

  #verdict(c: TrackedConnection): AuthzVerdict {
    const w = this.#state.workloads.byUid(c.destinationUid);
    if (w === undefined) return { allowed: false, reason: 'destination workload removed', dryRun: [] };
    return authorize(this.#state.policies.forWorkload(w.namespace, w.authorizationPolicies).policies, c.request);
  }
}
