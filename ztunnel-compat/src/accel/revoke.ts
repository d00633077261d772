// SPDX-License-Identifier: Apache-2.0
// Closing same-node fast-path connections a policy change no longer allows.
// The kernel approved them at connect(); new connects already meet the new
// verdicts in the maps, but open sockets have no map entry to close them by.
// Which flows to close is decided here with the full policy (decide/authz),
// then the client's socket is destroyed through sock_diag (`ss -K`, needs
// CONFIG_INET_DIAG_DESTROY) inside the client pod's netns, which resets it.
import { execFile } from 'node:child_process';
import { authorize } from '../decide/authz.ts';
import type { ProxyState } from '../state/store.ts';
import { identityOf, type Workload } from '../state/workload.ts';

import type { Approval } from './layout.ts';

export interface EnrolledView {
  /** The workload enrolled with this netns cookie. */
  workloadByNetns(cookie: bigint): Workload | undefined;
  /** The netns fd of the enrolled pod with this workload uid. */
  netnsFdOf(uid: string): number | undefined;
}

export interface Revocation {
  approval: Approval;
  clientNetnsFd: number;
  dstIp: string;
}

/** The approved flows the destination's policies now deny. Pure. */
export function revoked(state: ProxyState, network: string, view: EnrolledView, approvals: readonly Approval[]): Revocation[] {
  const out: Revocation[] = [];
  for (const a of approvals) {
    const dst = view.workloadByNetns(a.dstNetns);
    const src = state.workloads.byAddress(network, a.clientIp);
    const clientNetnsFd = src === undefined ? undefined : view.netnsFdOf(src.uid);
    if (dst === undefined || src === undefined || clientNetnsFd === undefined) continue;
    const dstIp = dst.workloadIps.find((ip) => !ip.includes(':')) ?? '';
    const found = state.policies.forWorkload(dst.namespace, dst.authorizationPolicies);
    const verdict = authorize(found.policies, { source: identityOf(src), sourceIp: a.clientIp, destinationIp: dstIp, destinationPort: a.dstPort });
    if (!verdict.allowed) out.push({ approval: a, clientNetnsFd, dstIp });
  }
  return out;
}

/** Resets one client socket; rejects with ss's error. */
export function destroyClientSocket(r: Revocation): Promise<void> {
  const a = r.approval;
  const filter = ['src', a.clientIp, 'sport', '=', `:${a.clientPort}`, 'dst', r.dstIp, 'dport', '=', `:${a.dstPort}`];
  return new Promise((resolve, reject) => {
    // Our own fd of the pod's netns, seen through /proc by the child.
    execFile('nsenter', [`--net=/proc/${process.pid}/fd/${r.clientNetnsFd}`, 'ss', '-K', ...filter], { timeout: 5000 }, (err) => {
      if (err === null) resolve();
      else reject(new Error(`ss -K: ${err.message}`));
    });
  });
}
