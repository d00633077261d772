// SPDX-License-Identifier: Apache-2.0
// What the demo builds, as data: two nodes with a handful of pods, and the
// mesh they form in ztunnel's static-config format (workloads, services, a
// waypoint, one DENY policy). Pure, so a test can read it without root.
import type { LabSpec } from '../lab/index.ts';

export interface DemoPod {
  name: string;
  node: 0 | 1;
  serviceAccount: string;
  /** Enrolled in the mesh (istio.io/dataplane-mode=ambient); `outside` is not. */
  enrolled: boolean;
}

export const PODS: readonly DemoPod[] = [
  { name: 'client', node: 0, serviceAccount: 'client', enrolled: true },
  { name: 'blocked', node: 0, serviceAccount: 'blocked', enrolled: true },
  { name: 'neighbour', node: 0, serviceAccount: 'neighbour', enrolled: true },
  { name: 'server', node: 1, serviceAccount: 'server', enrolled: true },
  { name: 'waypoint', node: 1, serviceAccount: 'waypoint', enrolled: true },
  { name: 'shop', node: 1, serviceAccount: 'shop', enrolled: true },
  { name: 'outside', node: 1, serviceAccount: 'default', enrolled: false },
];

/** Where each app pod listens (pod IP). */
export const APP_PORT = 8080;
/** The waypoint's inbound binding: PROXY v2 on loopback, as a sandwiched Envoy gateway would take it. */
export const WAYPOINT_TUNNEL_PORT = 15088;

export const SERVICES = {
  echo: { hostname: 'echo.default.svc.cluster.local', vip: '10.96.0.10', port: 80 },
  shop: { hostname: 'shop.default.svc.cluster.local', vip: '10.96.0.20', port: 80 },
  waypoint: { hostname: 'waypoint.default.svc.cluster.local', vip: '10.96.0.21', port: 15008 },
} as const;

/** Where pods send DNS (a kube-dns-like ClusterIP nothing listens on: istio-cni's capture takes the queries to Skein). */
export const CLUSTER_DNS = '10.96.0.53';

export const DENY_POLICY = 'default/deny-blocked';
export const TRUST_DOMAIN = 'cluster.local';

export function spiffe(serviceAccount: string, namespace = 'default'): string {
  return `spiffe://${TRUST_DOMAIN}/ns/${namespace}/sa/${serviceAccount}`;
}

export function labSpec(): LabSpec {
  return {
    nodes: [0, 1].map((i) => ({
      name: `node${i}`,
      pods: PODS.filter((p) => p.node === i).map((p) => ({ name: p.name, serviceAccount: p.serviceAccount })),
    })),
  };
}

/** The static mesh (LOCAL_XDS_PATH) for pods with these addresses. */
export function meshYaml(ipOf: (pod: string) => string): string {
  const member = (svc: keyof typeof SERVICES, target: number): string =>
    `  services:\n    default/${SERVICES[svc].hostname}: {${SERVICES[svc].port}: ${target}}\n`;
  const extra: Record<string, string> = {
    server: member('echo', APP_PORT),
    waypoint: `  applicationTunnel: {protocol: PROXY, port: ${WAYPOINT_TUNNEL_PORT}}\n${member('waypoint', 15008)}`,
    shop: `  waypoint: {destination: default/${SERVICES.waypoint.hostname}}\n${member('shop', APP_PORT)}`,
  };
  const workloads = PODS.filter((p) => p.enrolled).map((p) => `- uid: Kubernetes//Pod/default/${p.name}
  name: ${p.name}
  namespace: default
  trustDomain: cluster.local
  serviceAccount: ${p.serviceAccount}
  workloadIps: ["${ipOf(p.name)}"]
  protocol: HBONE
  node: node${p.node}
${extra[p.name] ?? '  services: {}\n'}`).join('');
  const service = (key: keyof typeof SERVICES, target: number, more = ''): string => {
    const s = SERVICES[key];
    return `- {name: ${key}, namespace: default, hostname: ${s.hostname}, vips: ["/${s.vip}"], ports: {${s.port}: ${target}}${more}}\n`;
  };
  const [ns, name] = DENY_POLICY.split('/');
  return `# Written by the Skein demo (test/demo/mesh.ts): ztunnel's static format.
workloads:
${workloads}services:
${service('echo', APP_PORT)}${service('shop', APP_PORT, `, waypoint: {destination: default/${SERVICES.waypoint.hostname}}`)}${service('waypoint', 15008)}policies:
- name: ${name ?? ''}
  namespace: ${ns ?? ''}
  scope: Namespace
  action: Deny
  rules: [[[{principals: [{Exact: ${TRUST_DOMAIN}/ns/default/sa/blocked}]}]]]
`;
}
