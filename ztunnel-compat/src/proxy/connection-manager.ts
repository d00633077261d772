// SPDX-License-Identifier: Apache-2.0
// Inbound connections that passed authorization, kept so that a policy change
// can re-check them (ztunnel proxy/connection_manager.rs): a connection the
// new policies no longer allow is closed. Outbound connections are listed
// too, so that config_dump shows each pod's connections both ways, as
// ztunnel's workloadState does (istioctl's configdump InboundConnection and
// OutboundConnection).
import { authorize, type AuthzRequest } from '../decide/authz.ts';
import type { ProxyState } from '../state/store.ts';

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

export class ConnectionManager {
  readonly #state: ProxyState;
  readonly #conns = new Set<TrackedConnection>();
  readonly #outbound = new Set<{ podUid: string; view: ConnectionView }>();

  constructor(state: ProxyState) {
    this.#state = state;
  }

  get size(): number {
    return this.#conns.size;
  }

  /** Tracks a connection until the returned function is called. */
  register(c: TrackedConnection): () => void {
    this.#conns.add(c);
    return () => { this.#conns.delete(c); };
  }

  /** Lists an outbound connection of pod `podUid` until the returned function is called. */
  registerOutbound(podUid: string, view: ConnectionView): () => void {
    const entry = { podUid, view };
    this.#outbound.add(entry);
    return () => { this.#outbound.delete(entry); };
  }

  /** A pod's open connections, both ways (config_dump's workloadState[uid].connections). */
  byPod(podUid: string): PodConnections {
    const out: PodConnections = { inbound: [], outbound: [] };
    for (const c of this.#conns) if (c.pod?.uid === podUid) out.inbound.push(c.pod.view);
    for (const c of this.#outbound) if (c.podUid === podUid) out.outbound.push(c.view);
    return out;
  }

  /** Re-authorizes every tracked connection; closes the denied ones. */
  recheck(): number {
    let closed = 0;
    for (const c of [...this.#conns]) {
      const w = this.#state.workloads.byUid(c.destinationUid);
      const policies = w === undefined ? [] : this.#state.policies.forWorkload(w.namespace, w.authorizationPolicies).policies;
      const verdict = w === undefined ? { allowed: false as const, reason: 'destination workload removed' } : authorize(policies, c.request);
      if (!verdict.allowed) {
        this.#conns.delete(c);
        c.close(verdict.reason);
        closed++;
      }
    }
    return closed;
  }
}
