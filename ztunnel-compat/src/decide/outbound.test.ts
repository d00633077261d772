// SPDX-License-Identifier: Apache-2.0
// Table-driven tests of the outbound decision (reference §5.4, §5.7), one row
// per rule. State is built the way the daemon builds it: xDS resources →
// ProxyStateUpdater → ProxyState; no sockets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WorkloadStatus, type MessageInit, type Service as XdsService, type Workload as XdsWorkload } from '../xds/proto.ts';
import { spiffeUri } from '../identity/spiffe.ts';
import { ProxyState } from '../state/store.ts';
import { ProxyStateUpdater, type XdsResource } from '../state/updater.ts';
import { ip, pod, serviceResource, workloadResource } from '../state/testing.ts';
import { decideOutbound, decideResolved, hostPort, type OutboundDecision, type OutboundFacts } from './outbound.ts';

const ECHO = 'echo.ns.svc.cluster.local';
const ECHO_KEY = `ns/${ECHO}`;
const WP = 'wp.ns.svc.cluster.local';
const VIP = '10.96.0.10';
const CLIENT_IP = '10.0.0.1';
const CLIENT_UID = 'Kubernetes//Pod/client/client';
const CLIENT_ID = 'spiffe://cluster.local/ns/client/sa/sa';

// ---- builders --------------------------------------------------------------

function client(extra: MessageInit<XdsWorkload> = {}): XdsResource {
  return workloadResource(pod('client', 'client', CLIENT_IP, { locality: { region: 'r1', zone: 'z1' }, ...extra }));
}

/** A pod backing echo:80 (→ 8080 unless the service or `ports` says otherwise). */
function backend(name: string, addr: string, extra: MessageInit<XdsWorkload> = {}, ports = [{ servicePort: 80, targetPort: 8080 }]): XdsResource {
  return workloadResource(pod(name, 'ns', addr, { serviceAccount: name, services: { [ECHO_KEY]: { ports } }, ...extra }));
}

function echo(extra: MessageInit<XdsService> = {}): XdsResource {
  return serviceResource({
    name: 'echo', namespace: 'ns', hostname: ECHO, addresses: [{ address: ip(VIP) }],
    ports: [{ servicePort: 80, targetPort: 8080 }], subjectAltNames: ['spiffe://cluster.local/ns/ns/sa/echo-san'], ...extra,
  });
}

/** The waypoint Deployment's pod and Service (port 15008). */
function waypoint(addr = '10.0.9.1', svc: MessageInit<XdsService> = {}, podExtra: MessageInit<XdsWorkload> = {}, name = 'wp'): XdsResource[] {
  const host = `${name}.ns.svc.cluster.local`;
  const ports = svc.ports ?? [{ servicePort: 15008, targetPort: 15008 }];
  return [
    workloadResource(pod(name, 'ns', addr, {
      serviceAccount: name, services: { [`ns/${host}`]: { ports: ports.map((p) => ({ servicePort: p.servicePort, targetPort: p.targetPort })) } }, ...podExtra,
    })),
    serviceResource({
      name, namespace: 'ns', hostname: host, addresses: [{ address: ip(`10.96.9.${name === 'wp' ? 1 : 2}`) }],
      subjectAltNames: [`spiffe://cluster.local/ns/ns/sa/${name}-san`], ...svc, ports,
    }),
  ];
}

const byHost = (hostname: string) => ({ hostname: { namespace: 'ns', hostname }, hboneMtlsPort: 15008 });

/** Cycles through the given values. */
function seq(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length] ?? 0;
}

// ---- the table -------------------------------------------------------------

/** The decision flattened for comparison; rows list only the keys they care about. */
interface Summary {
  kind: string;
  upstream?: string;
  authority?: string;
  ids?: string[];
  dest?: string;
  svc?: string;
  wp?: string;
  reason?: RegExp;
  poolKey?: string;
}

function summarize(d: OutboundDecision): Omit<Summary, 'reason'> & { reason?: string } {
  switch (d.kind) {
    case 'drop': return { kind: d.kind, reason: d.reason };
    case 'passthrough': return { kind: d.kind, upstream: hostPort(d.upstream.ip, d.upstream.port), reason: d.reason };
    case 'tcp': return { kind: d.kind, upstream: hostPort(d.upstream.ip, d.upstream.port), dest: d.destination.uid, svc: d.service?.hostname };
    case 'hbone': return {
      kind: d.kind, upstream: hostPort(d.upstream.ip, d.upstream.port), authority: d.authority,
      ids: d.expectedIdentities.map(spiffeUri), dest: d.destination?.uid, svc: d.service?.hostname, wp: d.waypoint?.uid, poolKey: d.poolKey,
    };
    case 'no-upstream': return { kind: d.kind, reason: d.reason, svc: d.service?.hostname };
    case 'unsupported': return { kind: d.kind, reason: d.reason };
    case 'resolve': return { kind: d.kind, upstream: `${d.hostname}:${d.targetPort}`, dest: d.destination.uid, svc: d.service.hostname };
  }
}

interface Row {
  name: string;
  resources: XdsResource[];
  dst: string;
  /** Source workload; default the client pod. */
  source?: string;
  sourceIp?: string;
  random?: () => number;
  want: Summary;
}

const uid = (name: string, ns = 'ns'): string => `Kubernetes//Pod/${ns}/${name}`;
const id = (sa: string, ns = 'ns'): string => `spiffe://cluster.local/ns/${ns}/sa/${sa}`;

const rows: Row[] = [
  // §5.4.1 self-calls
  { name: '5.4.1 self-call: loopback:15001 is dropped', resources: [client()], dst: '127.0.0.1:15001', want: { kind: 'drop' } },
  { name: '5.4.1 self-call: loopback:15008 is dropped', resources: [client()], dst: '127.0.0.1:15008', want: { kind: 'drop' } },
  { name: '5.4.1 self-call: [::1]:15006 is dropped', resources: [client()], dst: '[::1]:15006', want: { kind: 'drop' } },
  { name: '5.4.1 self-call: loopback:15080 is dropped', resources: [client()], dst: '127.0.0.2:15080', want: { kind: 'drop' } },
  { name: '5.4.1 loopback on another port is not a self-call', resources: [client()], dst: '127.0.0.1:8080',
    want: { kind: 'passthrough', upstream: '127.0.0.1:8080' } },
  // §5.4.4 neither service nor workload
  { name: '5.4.4 unknown destination: passthrough plain TCP', resources: [client()], dst: '1.2.3.4:443',
    want: { kind: 'passthrough', upstream: '1.2.3.4:443', reason: /not a mesh destination/ } },
  // §5.4.4/7 workload IP
  { name: '5.4.7 workload IP, HBONE: ip:15008, authority ip:port, destination identity, pool key', resources: [client(), backend('b', '10.0.1.1')],
    dst: '10.0.1.1:9000',
    want: {
      kind: 'hbone', upstream: '10.0.1.1:15008', authority: '10.0.1.1:9000', ids: [id('b')], dest: uid('b'), svc: undefined, wp: undefined,
      poolKey: `${CLIENT_ID}|${id('b')}|10.0.1.1:15008|${CLIENT_IP}`,
    } },
  { name: '5.4.7 workload IP, protocol NONE: plain TCP to ip:port', resources: [client(), backend('b', '10.0.1.1', { tunnelProtocol: 0 })],
    dst: '10.0.1.1:9000', want: { kind: 'tcp', upstream: '10.0.1.1:9000', dest: uid('b'), svc: undefined } },
  { name: '5.4.7 workload hostname only: resolve it (on-demand DNS), then the target port', resources: [client(), echo(),
    backend('h', '10.0.1.1', { addresses: [], hostname: 'h.example.com' })],
  dst: `${VIP}:80`, want: { kind: 'resolve', upstream: 'h.example.com:8080', dest: uid('h'), svc: 'echo.ns.svc.cluster.local' } },
  // §5.4.3/4 service VIP
  { name: '5.4.4 service VIP: endpoint via HBONE, service target port, identity + service SANs', resources: [client(), echo(), backend('b', '10.0.1.1', {}, [])],
    dst: `${VIP}:80`,
    want: {
      kind: 'hbone', upstream: '10.0.1.1:15008', authority: '10.0.1.1:8080', ids: [id('b'), id('echo-san')], dest: uid('b'), svc: ECHO,
      poolKey: `${CLIENT_ID}|${id('b')},${id('echo-san')}|10.0.1.1:15008|${CLIENT_IP}`,
    } },
  { name: '5.4.7 service VIP, endpoint protocol NONE: plain TCP to ip:targetPort', resources: [client(), echo(), backend('b', '10.0.1.1', { tunnelProtocol: 0 })],
    dst: `${VIP}:80`, want: { kind: 'tcp', upstream: '10.0.1.1:8080', dest: uid('b'), svc: ECHO } },
  { name: '5.4.4 undefined service port: no upstream', resources: [client(), echo(), backend('b', '10.0.1.1')],
    dst: `${VIP}:81`, want: { kind: 'no-upstream', reason: /no port 81/, svc: ECHO } },
  { name: '5.4.4 no endpoints: NoHealthyUpstream', resources: [client(), echo()],
    dst: `${VIP}:80`, want: { kind: 'no-upstream', reason: /no healthy upstream/, svc: ECHO } },
  { name: '5.4.4 target port: the endpoint port map overrides the service target port',
    resources: [client(), echo(), backend('b', '10.0.1.1', {}, [{ servicePort: 80, targetPort: 9090 }])],
    dst: `${VIP}:80`, want: { kind: 'hbone', authority: '10.0.1.1:9090' } },
  { name: '5.4.4 named target port: service target 0, taken from the endpoint; endpoints without it are skipped',
    resources: [client(), echo({ ports: [{ servicePort: 80, targetPort: 0 }] }),
      backend('a', '10.0.1.1', {}, []), backend('b', '10.0.1.2', {}, [{ servicePort: 80, targetPort: 9090 }])],
    dst: `${VIP}:80`, random: seq(0), want: { kind: 'hbone', authority: '10.0.1.2:9090', dest: uid('b') } },
  { name: '5.4.4 health: unhealthy endpoints are skipped',
    resources: [client(), echo(), backend('a', '10.0.1.1', { status: 1 }), backend('b', '10.0.1.2')],
    dst: `${VIP}:80`, random: seq(0), want: { kind: 'hbone', dest: uid('b') } },
  { name: '5.4.4 health: only unhealthy endpoints → no upstream',
    resources: [client(), echo(), backend('a', '10.0.1.1', { status: 1 })],
    dst: `${VIP}:80`, want: { kind: 'no-upstream', reason: /no healthy upstream/ } },
  { name: '5.4.4 health: ALLOW_ALL picks unhealthy endpoints too',
    resources: [client(), echo({ loadBalancing: { routingPreference: [], healthPolicy: 1 } }), backend('a', '10.0.1.1', { status: 1 })],
    dst: `${VIP}:80`, want: { kind: 'hbone', dest: uid('a') } },
  { name: '5.4.4 capacity weighting: 1 vs 3, random 0.2 → first (0.8 < 1)',
    resources: [client(), echo(), backend('a', '10.0.1.1'), backend('b', '10.0.1.2', { capacity: { value: 3 } })],
    dst: `${VIP}:80`, random: seq(0.2), want: { kind: 'hbone', dest: uid('a') } },
  { name: '5.4.4 capacity weighting: 1 vs 3, random 0.3 → second (1.2 ≥ 1)',
    resources: [client(), echo(), backend('a', '10.0.1.1'), backend('b', '10.0.1.2', { capacity: { value: 3 } })],
    dst: `${VIP}:80`, random: seq(0.3), want: { kind: 'hbone', dest: uid('b') } },
  { name: '5.4.4 capacity 0 is never picked',
    resources: [client(), echo(), backend('a', '10.0.1.1', { capacity: { value: 0 } }), backend('b', '10.0.1.2')],
    dst: `${VIP}:80`, random: seq(0), want: { kind: 'hbone', dest: uid('b') } },
  { name: '5.4.4 locality STRICT: only endpoints matching every scope',
    resources: [client(), echo({ loadBalancing: { routingPreference: [1, 2], mode: 1 } }),
      backend('far', '10.0.1.1', { locality: { region: 'r1', zone: 'z2' }, capacity: { value: 100 } }),
      backend('near', '10.0.1.2', { locality: { region: 'r1', zone: 'z1' } })],
    dst: `${VIP}:80`, random: seq(0), want: { kind: 'hbone', dest: uid('near') } },
  { name: '5.4.4 locality STRICT: no endpoint matches every scope → no upstream',
    resources: [client(), echo({ loadBalancing: { routingPreference: [1, 2], mode: 1 } }),
      backend('far', '10.0.1.1', { locality: { region: 'r1', zone: 'z2' } })],
    dst: `${VIP}:80`, want: { kind: 'no-upstream' } },
  { name: '5.4.4 locality FAILOVER: the best tier present wins',
    resources: [client(), echo({ loadBalancing: { routingPreference: [1, 2], mode: 2 } }),
      backend('far', '10.0.1.1', { locality: { region: 'r2', zone: 'z1' }, capacity: { value: 100 } }),
      backend('region', '10.0.1.2', { locality: { region: 'r1', zone: 'z9' } })],
    dst: `${VIP}:80`, random: seq(0.99), want: { kind: 'hbone', dest: uid('region') } },
  { name: '5.4.4 locality FAILOVER: degrades to a non-matching tier when nothing better exists',
    resources: [client(), echo({ loadBalancing: { routingPreference: [1, 2], mode: 2 } }),
      backend('far', '10.0.1.1', { locality: { region: 'r2', zone: 'z2' } })],
    dst: `${VIP}:80`, want: { kind: 'hbone', dest: uid('far') } },
  { name: '5.4.4 locality STRICT: a leading NETWORK scope is preferred, not required (remote endpoint kept → double HBONE)',
    resources: [client(), echo({ loadBalancing: { routingPreference: [6, 1], mode: 1 } }),
      backend('remote', '10.0.1.1', { network: 'net2', locality: { region: 'r1' } })],
    dst: `${VIP}:80`, want: { kind: 'unsupported', reason: /double HBONE/ } },
  { name: '5.4.4 locality STRICT: a leading NETWORK scope still ranks the local network first',
    resources: [client(), echo({ loadBalancing: { routingPreference: [6, 1], mode: 1 } }),
      backend('remote', '10.0.1.1', { network: 'net2', locality: { region: 'r1' }, capacity: { value: 100 } }),
      backend('local', '10.0.1.2', { locality: { region: 'r1' } })],
    dst: `${VIP}:80`, random: seq(0), want: { kind: 'hbone', dest: uid('local') } },
  { name: '5.4.4 LB mode PASSTHROUGH: plain TCP to the original VIP',
    resources: [client(), echo({ loadBalancing: { routingPreference: [], mode: 3 } }), backend('b', '10.0.1.1')],
    dst: `${VIP}:80`, want: { kind: 'passthrough', upstream: `${VIP}:80`, reason: /PASSTHROUGH/ } },
  { name: '5.4.5 endpoint on another network: double HBONE unsupported',
    resources: [client(), echo(), backend('r', '10.0.1.1', { network: 'net2' })],
    dst: `${VIP}:80`, want: { kind: 'unsupported', reason: /double HBONE/ } },
  // §5.4.3 visibility and tie-breaks
  { name: '5.4.3 visibility NAMESPACE: invisible to other namespaces → passthrough',
    resources: [client(), echo({ visibility: 1 }), backend('b', '10.0.1.1')],
    dst: `${VIP}:80`, want: { kind: 'passthrough', upstream: `${VIP}:80` } },
  { name: '5.4.3 visibility NAMESPACE: visible in its own namespace',
    resources: [client(), echo({ visibility: 1 }), backend('b', '10.0.1.1'),
      workloadResource(pod('local', 'ns', '10.0.0.7'))],
    source: uid('local'), sourceIp: '10.0.0.7', dst: `${VIP}:80`, want: { kind: 'hbone', svc: ECHO } },
  { name: '5.4.3 tie-break: a service in the client namespace wins the VIP',
    resources: [client(), echo({ canonical: true }), backend('b', '10.0.1.1'),
      serviceResource({ name: 'echo', namespace: 'client', hostname: 'echo.client.svc.cluster.local', addresses: [{ address: ip(VIP) }], ports: [{ servicePort: 80, targetPort: 8080 }] })],
    dst: `${VIP}:80`, want: { kind: 'no-upstream', svc: 'echo.client.svc.cluster.local' } },
  { name: '5.4.3 tie-break: canonical beats first seen',
    resources: [client(), backend('b', '10.0.1.1'),
      serviceResource({ name: 'echo', namespace: 'other', hostname: ECHO, addresses: [{ address: ip(VIP) }], ports: [{ servicePort: 80, targetPort: 8080 }] }),
      echo({ canonical: true })],
    dst: `${VIP}:80`, want: { kind: 'hbone', svc: ECHO, dest: uid('b') } },
  { name: '5.4.3 tie-break: a NAMESPACE-only service in another namespace does not win; the visible one does',
    resources: [client(), backend('b', '10.0.1.1'), echo({ canonical: true, visibility: 1 }),
      serviceResource({ name: 'echo', namespace: 'other', hostname: ECHO, addresses: [{ address: ip(VIP) }], ports: [{ servicePort: 80, targetPort: 8080 }] })],
    dst: `${VIP}:80`, want: { kind: 'no-upstream', reason: /no healthy upstream/ } },
  // §5.4.3 / §5.7 service waypoints
  { name: '5.7 service waypoint (hostname form): HBONE to waypoint, authority VIP:port, waypoint identity + waypoint SANs',
    resources: [client(), echo({ waypoint: byHost(WP) }), backend('b', '10.0.1.1'), ...waypoint()],
    dst: `${VIP}:80`,
    want: {
      kind: 'hbone', upstream: '10.0.9.1:15008', authority: `${VIP}:80`, ids: [id('wp'), id('wp-san')],
      dest: undefined, svc: ECHO, wp: uid('wp'), poolKey: `${CLIENT_ID}|${id('wp')},${id('wp-san')}|10.0.9.1:15008|${CLIENT_IP}`,
    } },
  { name: '5.7 service waypoint: target port of the waypoint service port 15008',
    resources: [client(), echo({ waypoint: byHost(WP) }), ...waypoint('10.0.9.1', { ports: [{ servicePort: 15008, targetPort: 15009 }] })],
    dst: `${VIP}:80`, want: { kind: 'hbone', upstream: '10.0.9.1:15009', authority: `${VIP}:80` } },
  { name: '5.7 service waypoint applies even to a port the service does not declare',
    resources: [client(), echo({ waypoint: byHost(WP) }), ...waypoint()],
    dst: `${VIP}:81`, want: { kind: 'hbone', upstream: '10.0.9.1:15008', authority: `${VIP}:81` } },
  { name: '5.7 waypoint endpoint lacking port 15008 without application_tunnel: rejected',
    resources: [client(), echo({ waypoint: byHost(WP) }), ...waypoint('10.0.9.1', { ports: [{ servicePort: 80, targetPort: 80 }] })],
    dst: `${VIP}:80`, want: { kind: 'no-upstream', reason: /waypoint ns\/wp\.ns\.svc\.cluster\.local has no usable endpoint/ } },
  { name: '5.7 waypoint endpoint lacking port 15008 with application_tunnel: accepted on 15008',
    resources: [client(), echo({ waypoint: byHost(WP) }),
      ...waypoint('10.0.9.1', { ports: [{ servicePort: 80, targetPort: 80 }] }, { applicationTunnel: { protocol: 1 } })],
    dst: `${VIP}:80`, want: { kind: 'hbone', upstream: '10.0.9.1:15008', wp: uid('wp') } },
  { name: '5.7 service waypoint (address form, a workload IP): that workload on hbone_mtls_port',
    resources: [client(), echo({ waypoint: { address: { address: ip('10.0.9.1') }, hboneMtlsPort: 15008 } }), ...waypoint()],
    dst: `${VIP}:80`, want: { kind: 'hbone', upstream: '10.0.9.1:15008', ids: [id('wp')], wp: uid('wp'), authority: `${VIP}:80` } },
  { name: '5.7 service waypoint (address form, a service VIP): resolved like the hostname form',
    resources: [client(), echo({ waypoint: { address: { address: ip('10.96.9.1') }, hboneMtlsPort: 15008 } }), ...waypoint()],
    dst: `${VIP}:80`, want: { kind: 'hbone', upstream: '10.0.9.1:15008', ids: [id('wp'), id('wp-san')], wp: uid('wp') } },
  { name: '5.7 service waypoint not found: no upstream',
    resources: [client(), echo({ waypoint: byHost(WP) }), backend('b', '10.0.1.1')],
    dst: `${VIP}:80`, want: { kind: 'no-upstream', reason: /waypoint ns\/wp\.ns\.svc\.cluster\.local/ } },
  { name: '5.5 service waypoint on another network: double HBONE unsupported',
    resources: [client(), echo({ waypoint: byHost(WP) }), ...waypoint('10.0.9.1', {}, { network: 'net2' })],
    dst: `${VIP}:80`, want: { kind: 'unsupported', reason: /double HBONE: waypoint/ } },
  { name: '5.7 weighted waypoints 1/3: random 0.2 → the first',
    resources: [client(), echo({ weightedWaypoints: [{ destination: byHost(WP), weight: 1 }, { destination: byHost('wp2.ns.svc.cluster.local'), weight: 3 }] }),
      ...waypoint(), ...waypoint('10.0.9.2', {}, {}, 'wp2')],
    dst: `${VIP}:80`, random: seq(0.2), want: { kind: 'hbone', wp: uid('wp'), upstream: '10.0.9.1:15008' } },
  { name: '5.7 weighted waypoints 1/3: random 0.3 → the second',
    resources: [client(), echo({ weightedWaypoints: [{ destination: byHost(WP), weight: 1 }, { destination: byHost('wp2.ns.svc.cluster.local'), weight: 3 }] }),
      ...waypoint(), ...waypoint('10.0.9.2', {}, {}, 'wp2')],
    dst: `${VIP}:80`, random: seq(0.3), want: { kind: 'hbone', wp: uid('wp2'), upstream: '10.0.9.2:15008', ids: [id('wp2'), id('wp2-san')] } },
  { name: '5.7 weighted waypoints: weight 0 is never chosen',
    resources: [client(), echo({ weightedWaypoints: [{ destination: byHost(WP), weight: 0 }, { destination: byHost('wp2.ns.svc.cluster.local'), weight: 1 }] }),
      ...waypoint(), ...waypoint('10.0.9.2', {}, {}, 'wp2')],
    dst: `${VIP}:80`, random: seq(0), want: { kind: 'hbone', wp: uid('wp2') } },
  // §5.4.6 workload waypoints and the loop guard
  { name: '5.4.6 workload waypoint: non-service traffic goes to it, authority = original ip:port',
    resources: [client(), backend('b', '10.0.1.1', { waypoint: byHost(WP) }), ...waypoint()],
    dst: '10.0.1.1:9000',
    want: { kind: 'hbone', upstream: '10.0.9.1:15008', authority: '10.0.1.1:9000', ids: [id('wp'), id('wp-san')], dest: uid('b'), wp: uid('wp') } },
  { name: '5.4.6 workload waypoint is ignored for service-addressed traffic',
    resources: [client(), echo(), backend('b', '10.0.1.1', { waypoint: byHost(WP) }), ...waypoint()],
    dst: `${VIP}:80`, want: { kind: 'hbone', upstream: '10.0.1.1:15008', wp: undefined, dest: uid('b') } },
  { name: '5.4.6 loop guard: the waypoint itself (same identity and IP) goes direct',
    resources: [client(), backend('b', '10.0.1.1', { waypoint: byHost(WP) }), ...waypoint()],
    source: uid('wp'), sourceIp: '10.0.9.1', dst: '10.0.1.1:9000',
    want: { kind: 'hbone', upstream: '10.0.1.1:15008', authority: '10.0.1.1:9000', wp: undefined,
      poolKey: `${id('wp')}|${id('b')}|10.0.1.1:15008|10.0.9.1` } },
  { name: '5.4.6 loop guard: a not-ready waypoint pod is not the waypoint (ztunnel keeps only healthy endpoints): its traffic goes to a ready one',
    resources: [client(), backend('b', '10.0.1.1', { waypoint: byHost(WP) }), ...waypoint('10.0.9.1', {}, { status: WorkloadStatus.UNHEALTHY }),
      workloadResource(pod('wp-b', 'ns', '10.0.9.5', { serviceAccount: 'wp', services: { [`ns/${WP}`]: { ports: [{ servicePort: 15008, targetPort: 15008 }] } } }))],
    source: uid('wp'), sourceIp: '10.0.9.1', dst: '10.0.1.1:9000', want: { kind: 'hbone', upstream: '10.0.9.5:15008', wp: uid('wp-b') } },
  { name: '5.4.6 loop guard: same identity from another IP is not the waypoint',
    resources: [client(), backend('b', '10.0.1.1', { waypoint: byHost(WP) }), ...waypoint(),
      workloadResource(pod('imposter', 'ns', '10.0.0.9', { serviceAccount: 'wp' }))],
    source: uid('imposter'), sourceIp: '10.0.0.9', dst: '10.0.1.1:9000', want: { kind: 'hbone', upstream: '10.0.9.1:15008', wp: uid('wp') } },
  // §5.4.7 IP families
  { name: '5.4.7 IPv6 VIP: the endpoint IP of the same family, bracketed authority',
    resources: [client(), echo({ addresses: [{ address: ip(VIP) }, { address: ip('fd00:96::10') }] }),
      backend('b', '10.0.1.1', { addresses: [ip('10.0.1.1'), ip('fd00:1::1')] })],
    dst: '[fd00:96::10]:80',
    want: { kind: 'hbone', upstream: '[fd00:1::1]:15008', authority: '[fd00:1::1]:8080', poolKey: `${CLIENT_ID}|${id('b')},${id('echo-san')}|[fd00:1::1]:15008|${CLIENT_IP}` } },
  { name: '5.4.7 IPv6 workload IP dialled directly: that IP',
    resources: [client(), backend('b', '10.0.1.1', { addresses: [ip('10.0.1.1'), ip('fd00:1::1')] })],
    dst: '[fd00:1::1]:9000', want: { kind: 'hbone', upstream: '[fd00:1::1]:15008', authority: '[fd00:1::1]:9000' } },
  { name: '5.4.7 ip_families IPV4_ONLY limits the choice even for an IPv6 request',
    resources: [client(), echo({ addresses: [{ address: ip('fd00:96::10') }], ipFamilies: 1 }),
      backend('b', '10.0.1.1', { addresses: [ip('fd00:1::1'), ip('10.0.1.1')] })],
    dst: '[fd00:96::10]:80', want: { kind: 'hbone', upstream: '10.0.1.1:15008', authority: '10.0.1.1:8080' } },
];

function facts(state: ProxyState, row: Row): OutboundFacts {
  const source = state.workloads.byUid(row.source ?? CLIENT_UID);
  if (source === undefined) throw new Error(`no source workload ${row.source ?? CLIENT_UID}`);
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(row.dst);
  if (m === null) throw new Error(`bad dst ${row.dst}`);
  return {
    source, originalDst: { ip: m[1] ?? '', port: Number(m[2]) }, sourceIp: row.sourceIp ?? CLIENT_IP,
    network: '', random: row.random ?? seq(0),
  };
}

for (const row of rows) {
  test(row.name, () => {
    const state = new ProxyState();
    const rejected = new ProxyStateUpdater(state).addressHandler.handle(row.resources, []);
    assert.deepEqual(rejected, []);
    const got = summarize(decideOutbound(state, facts(state, row)));
    const { reason, ...want } = row.want;
    const picked: Record<string, unknown> = {};
    for (const k of Object.keys(want)) picked[k] = (got as Record<string, unknown>)[k];
    assert.deepEqual(picked, want, JSON.stringify(got));
    if (reason !== undefined) assert.match(got.reason ?? '', reason);
  });
}

// ---- across many draws --------------------------------------------------------

test('weighted waypoint split over many draws follows the weights 1:3', () => {
  const state = new ProxyState();
  new ProxyStateUpdater(state).addressHandler.handle([
    client(), echo({ weightedWaypoints: [{ destination: byHost(WP), weight: 1 }, { destination: byHost('wp2.ns.svc.cluster.local'), weight: 3 }] }),
    ...waypoint(), ...waypoint('10.0.9.2', {}, {}, 'wp2'),
  ], []);
  const source = state.workloads.byUid(CLIENT_UID);
  assert.ok(source !== undefined);
  const counts = new Map<string, number>();
  for (let i = 0; i < 400; i++) {
    // Evenly spaced draws make the split exact.
    const d = decideOutbound(state, { source, originalDst: { ip: VIP, port: 80 }, sourceIp: CLIENT_IP, network: '', random: () => (i + 0.5) / 400 });
    const k = d.kind === 'hbone' ? d.waypoint?.uid ?? '' : d.kind;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  assert.deepEqual(Object.fromEntries(counts), { [uid('wp')]: 100, [uid('wp2')]: 300 });
});

test('a resolved hostname endpoint is dialled as any endpoint: plain TCP for protocol NONE, HBONE to :15008 otherwise', () => {
  for (const [tunnelProtocol, want] of [[0, { kind: 'tcp', upstream: '203.0.113.7:8080' }], [1, { kind: 'hbone', upstream: '203.0.113.7:15008', authority: '203.0.113.7:8080' }]] as const) {
    const state = new ProxyState();
    new ProxyStateUpdater(state).addressHandler.handle([client(), echo(), backend('h', '10.0.1.1', { addresses: [], hostname: 'h.example.com', tunnelProtocol })], []);
    const f = facts(state, { name: '', resources: [], dst: `${VIP}:80`, want: { kind: 'resolve' } });
    const d = decideOutbound(state, f);
    assert.equal(d.kind, 'resolve');
    const got = summarize(decideResolved(f, d, '203.0.113.7'));
    assert.deepEqual({ kind: got.kind, upstream: got.upstream, ...(want.kind === 'hbone' ? { authority: got.authority } : {}) }, want);
    assert.equal(got.dest, uid('h'));
    assert.equal(got.svc, ECHO);
  }
});

test('TRANSPARENT_NETWORK_POLICIES: HBONE straight to a workload dials its target port (pooled per port); a waypoint is still dialled as before', () => {
  const state = new ProxyState();
  new ProxyStateUpdater(state).addressHandler.handle([
    client(), echo(), backend('b', '10.0.1.1'),
    echo({ name: 'viawp', hostname: 'viawp.ns.svc.cluster.local', addresses: [{ network: '', address: ip('10.96.0.11') }], waypoint: byHost(WP) }), ...waypoint(),
  ], []);
  const run = (dst: string, transparent: boolean): ReturnType<typeof summarize> => summarize(decideOutbound(state, { ...facts(state, { name: '', resources: [], dst, want: { kind: 'hbone' } }), transparentNetworkPolicies: transparent }));
  const plain = run(`${VIP}:80`, false);
  const transparent = run(`${VIP}:80`, true);
  assert.deepEqual([plain.upstream, plain.authority], ['10.0.1.1:15008', '10.0.1.1:8080']);
  assert.deepEqual([transparent.upstream, transparent.authority], ['10.0.1.1:8080', '10.0.1.1:8080']);
  assert.deepEqual(run('10.0.1.1:9090', true).upstream, '10.0.1.1:9090');
  const d = decideOutbound(state, { ...facts(state, { name: '', resources: [], dst: `${VIP}:80`, want: { kind: 'hbone' } }), transparentNetworkPolicies: true });
  assert.ok(d.kind === 'hbone' && d.poolKey.includes('|10.0.1.1:8080|'));
  // Through the service's waypoint: its address and port, flag or not.
  assert.equal(run('10.96.0.11:80', true).upstream, run('10.96.0.11:80', false).upstream);
});
