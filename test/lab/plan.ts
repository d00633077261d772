// SPDX-License-Identifier: Apache-2.0
// Pure planning of a lab: names, addresses and routes for N nodes × M pods,
// validated before anything touches the system.
//
// Addressing (all inside the lab; no namespace has a default route):
//   node i      172.31.0.(10+i)/24      fd00:31::(10+i)/64     on the fabric bridge
//   pods of i   10.244.i.0/24           fd00:244:i::/64        routed via node i
//   pod j       10.244.i.(10+j)/32      fd00:244:i::(10+j)/128 ptp veth to its node
//   gateway     10.244.i.1              fd00:244:i::1          on every node-side pod veth
//   services    10.96.0.0/16            fd00:96::/64           VIPs, routed to the node (never answered there)

export interface PodSpec {
  name?: string;
  namespace?: string;
  serviceAccount?: string;
  /** Fixed IPv4 address; must lie in its node's pod range 10.244.<node>.10-249. */
  ip4?: string;
}

export interface NodeSpec {
  name?: string;
  pods: number | PodSpec[];
}

export interface LabSpec {
  nodes: number | NodeSpec[];
  /** Pods per node when `nodes` is a number. */
  podsPerNode?: number;
}

export interface PodPlan {
  name: string;
  namespace: string;
  serviceAccount: string;
  /** Kubernetes-style pod UID, as ZDS carries it. */
  uid: string;
  nodeIndex: number;
  index: number;
  netns: string;
  ip4: string;
  ip6: string;
  /** Interface name of the pod's veth on the node side. */
  nodeIfname: string;
}

export interface NodePlan {
  name: string;
  index: number;
  netns: string;
  ip4: string;
  ip6: string;
  podCidr4: string;
  podCidr6: string;
  gateway4: string;
  gateway6: string;
  pods: PodPlan[];
}

export interface LabPlan {
  runId: string;
  fabricNetns: string;
  nodes: NodePlan[];
}

export const LAB_PREFIX = 'skl-';
export const MAX_NODES = 50;
export const MAX_PODS_PER_NODE = 240;
/**
 * The lab's address ranges; `service*` is the service VIP range (like a
 * cluster's service CIDR): pods route it to their node, where nothing answers
 * unless a node proxy captured the connection first.
 */
export const LAB_CIDRS = { node4: '172.31.0.0/24', node6: 'fd00:31::/64', pod4: '10.244.0.0/16', pod6: 'fd00:244::/32', service4: '10.96.0.0/16', service6: 'fd00:96::/64' } as const;

export class LabSpecError extends Error {
  override name = 'LabSpecError';
}

const NAME = /^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$/;

export function planLab(spec: LabSpec, runId: string): LabPlan {
  if (!/^[a-z0-9]{4,8}$/.test(runId)) throw new LabSpecError(`run id must be 4-8 lowercase alphanumerics, got '${runId}'`);
  const nodeSpecs = normalizeNodes(spec);
  if (nodeSpecs.length === 0) throw new LabSpecError('a lab needs at least one node');
  if (nodeSpecs.length > MAX_NODES) throw new LabSpecError(`too many nodes: ${nodeSpecs.length} (at most ${MAX_NODES})`);

  const nodeNames = new Set<string>();
  const podKeys = new Set<string>();
  const ips = new Map<string, string>();
  const nodes = nodeSpecs.map((ns, i): NodePlan => {
    const name = ns.name ?? `node${i}`;
    checkName(name, 'node');
    if (nodeNames.has(name)) throw new LabSpecError(`duplicate node name '${name}'`);
    nodeNames.add(name);
    const podSpecs = typeof ns.pods === 'number' ? Array.from({ length: checkCount(ns.pods, name) }, (): PodSpec => ({})) : ns.pods;
    if (podSpecs.length > MAX_PODS_PER_NODE) throw new LabSpecError(`too many pods on ${name}: ${podSpecs.length} (at most ${MAX_PODS_PER_NODE})`);
    const node: NodePlan = {
      name,
      index: i,
      netns: `${LAB_PREFIX}${runId}-n${i}`,
      ip4: `172.31.0.${10 + i}`,
      ip6: canonical6(`fd00:31::${(10 + i).toString(16)}`),
      podCidr4: `10.244.${i}.0/24`,
      podCidr6: `${canonical6(`fd00:244:${i.toString(16)}::`)}/64`,
      gateway4: `10.244.${i}.1`,
      gateway6: canonical6(`fd00:244:${i.toString(16)}::1`),
      pods: [],
    };
    const taken = new Set(podSpecs.flatMap((p) => (p.ip4 === undefined ? [] : [p.ip4])));
    let nextHost = 10;
    podSpecs.forEach((ps, j) => {
      const podName = ps.name ?? `pod${i}-${j}`;
      checkName(podName, 'pod');
      const namespace = ps.namespace ?? 'default';
      checkName(namespace, 'namespace');
      const key = `${namespace}/${podName}`;
      if (podKeys.has(key)) throw new LabSpecError(`duplicate pod '${key}'`);
      podKeys.add(key);
      let ip4 = ps.ip4;
      if (ip4 === undefined) {
        while (taken.has(`10.244.${i}.${nextHost}`)) nextHost++;
        ip4 = `10.244.${i}.${nextHost++}`;
      }
      const host = hostInPodRange(ip4, i);
      if (host === undefined) throw new LabSpecError(`pod ${key}: address ${ip4} is outside ${name}'s pod range 10.244.${i}.10-249`);
      const owner = ips.get(ip4);
      if (owner !== undefined) throw new LabSpecError(`pods ${owner} and ${key} overlap on address ${ip4}`);
      ips.set(ip4, key);
      node.pods.push({
        name: podName,
        namespace,
        serviceAccount: ps.serviceAccount ?? 'default',
        uid: podUid(runId, i, j),
        nodeIndex: i,
        index: j,
        netns: `${LAB_PREFIX}${runId}-n${i}p${j}`,
        ip4,
        ip6: canonical6(`fd00:244:${i.toString(16)}::${host.toString(16)}`),
        nodeIfname: `vp${j}`,
      });
    });
    return node;
  });
  return { runId, fabricNetns: `${LAB_PREFIX}${runId}-fab`, nodes };
}

/** The text form the kernel and Node print (RFC 5952), via the URL parser. */
function canonical6(ip: string): string {
  return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
}

function normalizeNodes(spec: LabSpec): NodeSpec[] {
  if (typeof spec.nodes === 'number') {
    const n = checkCount(spec.nodes, 'nodes');
    const pods = checkCount(spec.podsPerNode ?? 0, 'podsPerNode');
    return Array.from({ length: n }, () => ({ pods }));
  }
  if (spec.podsPerNode !== undefined) throw new LabSpecError('podsPerNode only applies when nodes is a number');
  return spec.nodes;
}

function checkCount(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 0) throw new LabSpecError(`${what} must be a non-negative integer, got ${n}`);
  return n;
}

function checkName(name: string, what: string): void {
  if (!NAME.test(name)) throw new LabSpecError(`${what} name '${name}' is not a DNS label (lowercase, digits, '-', at most 42 characters)`);
}

function hostInPodRange(ip4: string, node: number): number | undefined {
  const m = /^10\.244\.(\d+)\.(\d+)$/.exec(ip4);
  if (m === null || Number(m[1]) !== node) return undefined;
  const host = Number(m[2]);
  return host >= 10 && host <= 249 ? host : undefined;
}

/** A stable UUID-shaped uid per run, node and pod (what kubelet would assign). */
function podUid(runId: string, node: number, pod: number): string {
  const hex = Buffer.from(runId.padEnd(8, '0')).toString('hex').slice(0, 8);
  return `${hex}-0000-4000-8000-${node.toString(16).padStart(4, '0')}${pod.toString(16).padStart(8, '0')}`;
}
