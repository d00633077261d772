// SPDX-License-Identifier: Apache-2.0
// The paths `lab:istio` sends traffic along, each with curl inside a pod, its
// outcome checked against what the app saw, and Skein's decision read from its
// access log. The configuration behind each path came from istiod.
import { accessSince, describe, mark, type AccessLine } from '../demo/access-log.ts';
import type { LabPod } from '../lab/index.ts';
import { APP_NAMESPACE, APP_PORT, APP_SERVICES, type IstioCluster } from './cluster.ts';

export interface PathResult {
  path: string;
  ok: boolean;
  /** What Skein decided, from its access log (or why there is nothing to say). */
  decision: string;
}

interface Curl { code: number; servedBy: string; seenFrom: string; err: string }

async function curl(from: LabPod, url: string, host?: string): Promise<Curl> {
  const args = ['-sS', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}|%header{x-served-by}|%header{x-seen-from}', ...(host === undefined ? [] : ['-H', `Host: ${host}`]), url];
  const r = await from.exec('curl', args, { timeoutMs: 10_000 });
  const [code, servedBy, seenFrom] = r.stdout.split('|');
  return { code: Number(code ?? 0), servedBy: servedBy ?? '', seenFrom: (seenFrom ?? '').trim(), err: r.stderr.trim() };
}

const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const spiffe = (sa: string): string => `spiffe://cluster.local/ns/${APP_NAMESPACE}/sa/${sa}`;
/** Logs flush asynchronously; give the daemons a moment after the last byte. */
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 300));

function since(c: IstioCluster): (node: number) => AccessLine[] {
  const offsets = c.nodes.map((n) => mark(c.logOf(n)));
  return (i) => {
    const n = c.nodes[i];
    return n === undefined ? [] : accessSince(c.logOf(n), offsets[i] ?? 0);
  };
}

async function allowed(c: IstioCluster, path: string, from: string, to: string, url: string, toNode: number, host?: string): Promise<PathResult> {
  const access = since(c);
  const tries = [];
  for (let i = 0; i < 3; i++) tries.push(await curl(c.pod(from), url, host));
  await settle();
  const lines = access(toNode);
  const inbound = lines.find((l) => l.direction === 'inbound' && l['dst.workload'] === to);
  const kernel = lines.find((l) => l.fastpath === 'same-node' && l['dst.workload'] === to);
  const line = inbound ?? kernel;
  const idsOk = line !== undefined && str(line['src.identity']) === spiffe(c.pod(from).serviceAccount) && str(line['dst.identity']) === spiffe(c.pod(to).serviceAccount);
  return {
    path,
    ok: tries.every((t) => t.code === 200 && t.servedBy === to && t.seenFrom === c.pod(from).ip4) && idsOk,
    decision: line === undefined
      ? `no access-log line for ${to} on node${toNode} (curl: ${tries.map((t) => t.code || t.err).join(', ')})`
      : `allowed: ${str(line['src.identity'])} → ${str(line['dst.identity'])}${kernel !== undefined && inbound === undefined ? ' (eBPF same-node fast path)' : ''}; ${describe(line)}`,
  };
}

export function crossNode(c: IstioCluster): Promise<PathResult> {
  return allowed(c, 'cross-node', 'client', 'server', `http://${c.vip('echo')}:${APP_SERVICES.echo.port}/`, 1);
}

export function sameNode(c: IstioCluster): Promise<PathResult> {
  return allowed(c, 'same-node', 'client', 'neighbour', `http://${c.pod('neighbour').ip4}:${APP_PORT}/`, 0);
}

/** `blocked` is denied by an AuthorizationPolicy applied through the API (see main.ts). */
export async function denied(c: IstioCluster, policy: string): Promise<PathResult> {
  const access = since(c);
  const tries = [];
  for (let i = 0; i < 3; i++) tries.push(await curl(c.pod('blocked'), `http://${c.vip('echo')}:${APP_SERVICES.echo.port}/`));
  await settle();
  const refusal = access(1).find((l) => l.direction === 'inbound' && str(l['src.identity']) === spiffe('blocked'));
  return {
    path: 'denied',
    ok: tries.every((t) => t.code === 0) && refusal !== undefined && str(refusal.error) !== '',
    decision: refusal === undefined ? `no refusal logged on node1 (curl: ${tries.map((t) => t.code || t.err).join(', ')})` : `denied by ${policy}: ${describe(refusal)}`,
  };
}
