// SPDX-License-Identifier: Apache-2.0
// One probe per path: real HTTP requests by curl inside a pod, then the proof
// of the way they went (the nodes' forwarding counters, the daemons' access
// logs) and what Skein decided.
import { captured } from '../integration/lab-helpers.ts';
import type { LabPod } from '../lab/index.ts';
import { kernelSupports } from '../skips.ts';
import { accessSince, describe, mark, type AccessLine } from './access-log.ts';
import type { Cluster } from './cluster.ts';
import { APP_PORT, CLUSTER_DNS, DENY_POLICY, SERVICES, spiffe } from './mesh.ts';
import type { PathReport } from './report.ts';

const BIG = 1 << 20;
const SMALL_RUNS = 5;

interface CurlResult {
  exit: number | null;
  code: number;
  size: number;
  ms: number;
  servedBy: string;
  seenFrom: string;
  waypoint: string;
  clientSrc: string;
  err: string;
}

async function curl(from: LabPod, url: string, host?: string, extra: readonly string[] = []): Promise<CurlResult> {
  const fmt = '%{http_code}|%{size_download}|%{time_total}|%header{x-served-by}|%header{x-seen-from}|%header{x-waypoint}|%header{x-client-src}';
  const args = ['-sS', '-m', '5', '-o', '/dev/null', '-w', fmt, ...(host === undefined ? [] : ['-H', `Host: ${host}`]), ...extra, url];
  const r = await from.exec('curl', args, { timeoutMs: 10_000 });
  const [code, size, secs, servedBy, seenFrom, waypoint, clientSrc] = r.stdout.split('|');
  return {
    exit: r.code, code: Number(code ?? 0), size: Number(size ?? 0), ms: Number(secs ?? 0) * 1000,
    servedBy: servedBy ?? '', seenFrom: seenFrom ?? '', waypoint: waypoint ?? '', clientSrc: (clientSrc ?? '').trim(), err: r.stderr.trim(),
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

/** The big transfer once, then a few small requests for latency. */
async function exercise(from: LabPod, base: string, host?: string): Promise<{ big: CurlResult; small: CurlResult[] }> {
  const big = await curl(from, `${base}/bytes/${BIG}`, host);
  const small: CurlResult[] = [];
  for (let i = 0; i < SMALL_RUNS; i++) small.push(await curl(from, `${base}/`, host));
  return { big, small };
}

/** One request as the client saw it, for a report that failed. */
function seen(r: CurlResult): string {
  const who = r.servedBy === '' ? '' : `, served by ${r.servedBy} seeing ${r.seenFrom || '?'}`;
  return `curl exit ${r.exit ?? 'killed'}${r.err === '' ? '' : ` (${r.err})`}, HTTP ${r.code}, ${r.size} bytes in ${r.ms.toFixed(1)} ms${who}`;
}

/** The requests that went wrong (the big one when `bigOk` is false, small ones not answered 200), or undefined. */
function failures(big: CurlResult, bigOk: boolean, small: readonly CurlResult[]): string | undefined {
  const bad: [string, CurlResult][] = bigOk ? [] : [['the 1 MiB request', big]];
  for (const [i, r] of small.entries()) if (r.code !== 200) bad.push([`small request ${i + 1}`, r]);
  return bad.length === 0 ? undefined : bad.map(([what, r]) => `${what}: ${seen(r)}`).join('; ');
}

const str = (v: unknown): string => (typeof v === 'string' ? v : '');

/** Why node0's daemon has the same-node fast path off, from its config_dump. */
async function fastpathReason(c: Cluster): Promise<string> {
  const n = c.nodes[0];
  if (n === undefined) return 'no node0';
  const r = await n.exec('curl', ['-sS', '-m', '5', 'http://127.0.0.1:15000/config_dump'], { timeoutMs: 10_000 });
  try {
    const d = JSON.parse(r.stdout) as { kernelFastpaths?: { paths?: Record<string, { active: boolean; reason: string }> } };
    const s = d.kernelFastpaths?.paths?.['same-node'];
    return s === undefined ? 'no kernelFastpaths in its config_dump' : s.active ? 'on (yet this flow missed it)' : `off (${s.reason})`;
  } catch {
    return `config_dump unreadable: ${r.stderr.trim()}`;
  }
}

/** Counters and log offsets before a probe, and what changed after it. */
function watch(c: Cluster) {
  const offsets = c.nodes.map((n) => mark(c.logOf(n)));
  const counters = new Map<string, number>();
  const key = (pod: LabPod, port: number): string => `${pod.name}:${port}`;
  for (const p of c.lab.pods) for (const port of [APP_PORT, 15008]) counters.set(key(p, port), c.forwarded(p.node, p.ip4, port));
  return {
    /** Packets forwarded to the pod's port during the probe. */
    delta: (pod: LabPod, port: number): number => c.forwarded(pod.node, pod.ip4, port) - (counters.get(key(pod, port)) ?? 0),
    /** Access-log lines written by node i's daemon during the probe. */
    access: (i: number): AccessLine[] => {
      const n = c.nodes[i];
      return n === undefined ? [] : accessSince(c.logOf(n), offsets[i] ?? 0);
    },
  };
}

/** Logs flush asynchronously; give the daemons a moment after the last byte. */
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 300));

export async function crossNode(c: Cluster): Promise<PathReport> {
  const client = c.pod('client');
  const server = c.pod('server');
  const w = watch(c);
  const { big, small } = await exercise(client, `http://${SERVICES.echo.vip}:${SERVICES.echo.port}`);
  await settle();
  const hbone = w.delta(server, 15008);
  const plain = w.delta(server, APP_PORT);
  const inbound = w.access(1).find((l) => l.direction === 'inbound' && l['dst.workload'] === 'server');
  const failure = failures(big, big.code === 200 && big.size === BIG && big.servedBy === 'server' && big.seenFrom === client.ip4, small);
  return {
    path: 'cross-node-hbone',
    taken: hbone > 0 && plain === 0,
    ok: failure === undefined,
    bytes: big.size,
    latency_ms: median(small.map((s) => s.ms)),
    decision: inbound === undefined
      ? 'no inbound access-log line on node1'
      : `allowed: ${str(inbound['src.identity'])} → ${str(inbound['dst.identity'])} over mTLS (HBONE CONNECT ${str(inbound['dst.hbone_addr'])}); the app saw the client's own IP ${big.seenFrom}`,
    evidence: `node1 forwarded ${hbone} packets to ${server.ip4}:15008 and ${plain} to :${APP_PORT} (plaintext); service ${SERVICES.echo.hostname} (${SERVICES.echo.vip}) → endpoint on node1`,
    ...(failure === undefined ? {} : { failure }),
  };
}

export async function sameNode(c: Cluster): Promise<PathReport> {
  const client = c.pod('client');
  const target = c.pod('neighbour');
  const w = watch(c);
  const { big, small } = await exercise(client, `http://${target.ip4}:${APP_PORT}`);
  await settle();
  const lines = w.access(0);
  // The kernel fast path logs the flow once, marked; userspace logs both ends.
  const kernel = lines.find((l) => l.fastpath === 'same-node' && l['dst.workload'] === 'neighbour');
  const inbound = lines.find((l) => l.direction === 'inbound' && l['dst.workload'] === 'neighbour');
  const outbound = lines.find((l) => l.direction === 'outbound' && l.fastpath === undefined && l['dst.workload'] === 'neighbour');
  const userspace = inbound !== undefined && outbound !== undefined;
  const via = kernel ?? inbound;
  // On a kernel that has what the fast path needs, userspace here is a
  // failure, not a fallback: the daemon should have taken it (see why below).
  const expected = kernelSupports('same-node');
  const missed = expected && kernel === undefined;
  const why = missed ? await fastpathReason(c) : '';
  const failure = failures(big, big.code === 200 && big.size === BIG && big.servedBy === 'neighbour' && big.seenFrom === client.ip4, small);
  return {
    path: 'same-node',
    taken: (expected ? kernel !== undefined : kernel !== undefined || userspace) && w.access(1).length === 0,
    ok: !missed && failure === undefined,
    bytes: big.size,
    latency_ms: median(small.map((s) => s.ms)),
    decision: via === undefined
      ? 'no access-log line on node0'
      : kernel !== undefined
        ? `allowed in the kernel: ${str(kernel['src.identity'])} → ${str(kernel['dst.identity'])} by the destination's policy, checked at connect(); eBPF fast path, no proxy on the path`
        : missed
          ? `NOT on the kernel fast path although this machine supports it: ${str(via['src.identity'])} → ${str(via['dst.identity'])} went over HBONE within node0 in userspace; node0's daemon says: ${why}`
          : `allowed: ${str(via['src.identity'])} → ${str(via['dst.identity'])}, HBONE within node0 (userspace; this kernel lacks the fast path)`,
    evidence: kernel !== undefined
      ? 'node0\'s daemon logged one kernel flow (fastpath: same-node) and no userspace connection; node1 saw nothing'
      : 'node0\'s daemon logged both ends (outbound from client, inbound to neighbour); node1 saw nothing',
    ...(failure === undefined ? {} : { failure }),
  };
}

export async function passthrough(c: Cluster): Promise<PathReport> {
  const client = c.pod('client');
  const target = c.pod('outside');
  const w = watch(c);
  const { big, small } = await exercise(client, `http://${target.ip4}:${APP_PORT}`);
  await settle();
  const hbone = w.delta(target, 15008);
  const plain = w.delta(target, APP_PORT);
  const out = w.access(0).find((l) => l.direction === 'outbound' && l['dst.addr'] === `${target.ip4}:${APP_PORT}`);
  const failure = failures(big, big.code === 200 && big.size === BIG && big.servedBy === 'outside', small);
  return {
    path: 'passthrough',
    taken: plain > 0 && hbone === 0 && out !== undefined,
    ok: failure === undefined,
    bytes: big.size,
    latency_ms: median(small.map((s) => s.ms)),
    decision: `passthrough: ${target.ip4} is not a mesh workload, so Skein on node0 forwarded plain TCP${out === undefined ? ' (no access-log line seen)' : ''}`,
    evidence: `node1 forwarded ${plain} packets to ${target.ip4}:${APP_PORT} and ${hbone} to :15008`,
    ...(failure === undefined ? {} : { failure }),
  };
}

export async function waypoint(c: Cluster): Promise<PathReport> {
  const client = c.pod('client');
  const wp = c.pod('waypoint');
  const shop = c.pod('shop');
  const w = watch(c);
  const { big, small } = await exercise(client, `http://${SERVICES.shop.vip}:${SERVICES.shop.port}`, SERVICES.shop.hostname);
  await settle();
  const toWaypoint = w.delta(wp, 15008);
  const inbound = w.access(1).find((l) => l.direction === 'inbound' && l['dst.workload'] === 'waypoint');
  const failure = failures(big, big.code === 200 && big.size === BIG && big.servedBy === 'shop' && big.clientSrc === client.ip4, small);
  return {
    path: 'waypoint',
    // The bytes went to the waypoint over HBONE, and the shop was reached by the waypoint, not by the client.
    taken: toWaypoint > 0 && big.waypoint === 'haproxy' && big.seenFrom === wp.ip4,
    ok: failure === undefined,
    bytes: big.size,
    latency_ms: median(small.map((s) => s.ms)),
    decision: `service ${SERVICES.shop.hostname} has waypoint ${SERVICES.waypoint.hostname}: HBONE to the waypoint pod, PROXY v2 to haproxy on its 127.0.0.1:15088 with the client identity ${inbound === undefined ? '(no access-log line)' : str(inbound['src.identity'])}; haproxy routed on Host to ${shop.name}`,
    evidence: `node1 forwarded ${toWaypoint} packets to the waypoint's :15008; the shop saw haproxy's connection from ${big.seenFrom} with x-client-src ${big.clientSrc || '(none)'}`,
    ...(failure === undefined ? {} : { failure }),
  };
}

export async function denied(c: Cluster): Promise<PathReport> {
  const blocked = c.pod('blocked');
  const w = watch(c);
  const tries: CurlResult[] = [];
  for (let i = 0; i < SMALL_RUNS; i++) tries.push(await curl(blocked, `http://${SERVICES.echo.vip}:${SERVICES.echo.port}/`));
  await settle();
  const refusal = w.access(1).find((l) => l.direction === 'inbound' && str(l['src.identity']) === spiffe('blocked'));
  const sourceSide = w.access(0).find((l) => l.direction === 'outbound' && str(l['src.workload']) === 'blocked');
  const served = w.delta(c.pod('server'), APP_PORT);
  const answered = tries.flatMap((t, i) => (t.code === 0 && t.size === 0 ? [] : [`request ${i + 1} was answered: ${seen(t)}`]));
  if (served > 0) answered.push(`node1 forwarded ${served} packets to the server's :${APP_PORT}`);
  return {
    path: 'denied',
    taken: refusal !== undefined && str(refusal.error) !== '',
    ok: answered.length === 0,
    bytes: tries.reduce((n, t) => n + t.size, 0),
    latency_ms: median(tries.map((t) => t.ms)),
    decision: `denied by ${DENY_POLICY} (DENY principal ${spiffe('blocked')}) at node1: ${refusal === undefined ? 'no access-log line' : describe(refusal)}`,
    evidence: `the client saw: ${tries[0]?.err ?? ''}; node0 logged ${sourceSide === undefined ? 'nothing' : describe(sourceSide)}`,
    ...(answered.length === 0 ? {} : { failure: answered.join('; ') }),
  };
}

export async function dns(c: Cluster): Promise<PathReport> {
  const client = c.pod('client');
  const { hostname, port, vip } = SERVICES.echo;
  const before = captured(client, 'ISTIO_OUTPUT', 15053);
  // Asked at the cluster DNS address, as a pod's resolver would: istio-cni's
  // capture takes it to Skein in the pod. No DNS server exists in this lab.
  const r = await client.exec('dig', ['+tries=1', '+time=3', `@${CLUSTER_DNS}`, hostname, 'A'], { timeoutMs: 10_000 });
  const queries = captured(client, 'ISTIO_OUTPUT', 15053) - before;
  const answer = /;; ANSWER SECTION:\n\S+\s+\d+\s+IN\s+A\s+(\S+)/.exec(r.stdout)?.[1] ?? '';
  const queryMs = Number(/Query time: (\d+) msec/.exec(r.stdout)?.[1] ?? 0);
  const res = await curl(client, `http://${hostname}:${port}/`, undefined, ['--resolve', `${hostname}:${port}:${answer || vip}`]);
  const ok = res.code === 200 && res.servedBy === 'server';
  return {
    path: 'dns',
    taken: queries > 0 && answer === vip,
    ok,
    bytes: res.size,
    // dig reports whole milliseconds; a sub-millisecond answer shows as its floor.
    latency_ms: Math.max(queryMs, 0.001),
    decision: answer === ''
      ? `no answer for ${hostname}: ${r.stdout.trim().split('\n').find((l) => l.includes('status')) ?? r.stderr.trim()}`
      : `Skein's DNS proxy in the client pod answered ${hostname} → ${answer} from WDS; curl then reached ${res.servedBy || '(nothing)'} by name`,
    evidence: `istio-cni's DNS rule in the client pod redirected ${queries} packet(s) for ${CLUSTER_DNS}:53 to :15053`,
    ...(ok ? {} : { failure: `the request by name: ${seen(res)}` }),
  };
}

export const PROBES = [crossNode, sameNode, passthrough, waypoint, denied, dns] as const;
