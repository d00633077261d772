// SPDX-License-Identifier: Apache-2.0
// Inbound connections that passed authorization, kept so that a policy change
// can re-check them (ztunnel proxy/connection_manager.rs): a connection the
// new policies no longer allow is closed.
import { authorize, type AuthzRequest } from '../decide/authz.ts';
import type { ProxyState } from '../state/store.ts';

export interface TrackedConnection {
  /** The destination workload's uid: its policies are looked up afresh. */
  readonly destinationUid: string;
  readonly request: AuthzRequest;
  close(reason: string): void;
}

export class ConnectionManager {
  readonly #state: ProxyState;
  readonly #conns = new Set<TrackedConnection>();

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
