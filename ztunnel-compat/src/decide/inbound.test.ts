// SPDX-License-Identifier: Apache-2.0
// The inbound (15008) decision, reference §5.6 and §6: destination
// validation, the upstream, and the application tunnel. State is built from
// xDS resources, as the daemon builds it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProxyState } from '../state/store.ts';
import { ProxyStateUpdater, type XdsResource } from '../state/updater.ts';
import { ip, pod, serviceResource, workloadResource } from '../state/testing.ts';
import type { Workload } from '../state/workload.ts';
import { HealthPolicy, WorkloadStatus } from '../xds/proto.ts';
import { decideInbound, plaintextRefusal, type InboundDecision } from './inbound.ts';

const POD_IP = '10.0.1.5';
const WP_IP = '10.0.9.1';
const byHost = (hostname: string) => ({ hostname: { namespace: 'ns', hostname }, hboneMtlsPort: 15008 });

function stateOf(resources: XdsResource[]): ProxyState {
  const state = new ProxyState();
  assert.deepEqual(new ProxyStateUpdater(state).addressHandler.handle(resources, []), []);
  return state;
}

function must(w: Workload | undefined): Workload {
  assert.ok(w !== undefined);
  return w;
}

function decide(state: ProxyState, self: string, authority: string, localIp: string, localhostAppTunnel = true): InboundDecision {
  const [host = '', port = '0'] = authority.split(':');
  return decideInbound(state, {
    destination: must(state.workloads.byUid(`Kubernetes//Pod/ns/${self}`)),
    authority: { kind: 'ip', host, port: Number(port) }, localIp, network: '', localhostAppTunnel,
  });
}

/** A backend pod, the echo service (VIP 10.96.0.10:80 → 8080) with a waypoint service, and the waypoint pod. */
function mesh(waypointPod: Parameters<typeof pod>[3] = {}): ProxyState {
  return stateOf([
    workloadResource(pod('backend', 'ns', POD_IP, { services: { 'ns/echo.ns.svc.cluster.local': { ports: [{ servicePort: 80, targetPort: 8080 }] } } })),
    workloadResource(pod('other', 'ns', '10.0.1.6')),
    serviceResource({ name: 'echo', namespace: 'ns', hostname: 'echo.ns.svc.cluster.local', addresses: [{ address: ip('10.96.0.10') }], ports: [{ servicePort: 80, targetPort: 8080 }], waypoint: byHost('wp.ns.svc.cluster.local') }),
    workloadResource(pod('wp', 'ns', WP_IP, { services: { 'ns/wp.ns.svc.cluster.local': { ports: [{ servicePort: 15008, targetPort: 15008 }] } }, ...waypointPod })),
    serviceResource({ name: 'wp', namespace: 'ns', hostname: 'wp.ns.svc.cluster.local', addresses: [{ address: ip('10.96.9.1') }], ports: [{ servicePort: 15008, targetPort: 15008 }] }),
  ]);
}

test('an authority naming this pod connects to it from the client address', () => {
  const d = decide(mesh(), 'backend', `${POD_IP}:8080`, POD_IP);
  assert.deepEqual(d, { kind: 'connect', upstream: { ip: POD_IP, port: 8080 }, from: 'client', proxyProtocol: false, authzDestination: { ip: POD_IP, port: 8080 }, service: undefined });
});

test('an authority naming another pod is a 400 (IPMismatch)', () => {
  const d = decide(mesh(), 'backend', '10.0.1.6:8080', POD_IP);
  assert.equal(d.kind, 'reject');
  assert.equal(d.status, 400);
});

test('a proxy port in the authority is a 503', () => {
  const d = decide(mesh(), 'backend', `${POD_IP}:15001`, POD_IP);
  assert.deepEqual(d.kind === 'reject' ? d.status : d.kind, 503);
});

test('the waypoint of a service accepts that service\'s VIP; any other pod does not', () => {
  const atWaypoint = decide(mesh(), 'wp', '10.96.0.10:80', WP_IP);
  assert.equal(atWaypoint.kind, 'connect');
  assert.equal(atWaypoint.service?.hostname, 'echo.ns.svc.cluster.local');
  assert.deepEqual(atWaypoint.upstream, { ip: WP_IP, port: 80 });
  const elsewhere = decide(mesh(), 'other', '10.96.0.10:80', '10.0.1.6');
  assert.equal(elsewhere.kind === 'reject' ? elsewhere.status : 0, 400);
});

test('a not-ready waypoint pod is not the waypoint of the service (only healthy endpoints count, unless the health policy allows all)', () => {
  const notReady = mesh({ status: WorkloadStatus.UNHEALTHY });
  const d = decide(notReady, 'wp', '10.96.0.10:80', WP_IP);
  assert.equal(d.kind === 'reject' ? d.status : d.kind, 400);
  const allowAll = stateOf([
    workloadResource(pod('wp', 'ns', WP_IP, { status: WorkloadStatus.UNHEALTHY, services: { 'ns/wp.ns.svc.cluster.local': { ports: [{ servicePort: 15008, targetPort: 15008 }] } } })),
    serviceResource({ name: 'echo', namespace: 'ns', hostname: 'echo.ns.svc.cluster.local', addresses: [{ address: ip('10.96.0.10') }], ports: [{ servicePort: 80, targetPort: 8080 }], waypoint: byHost('wp.ns.svc.cluster.local') }),
    serviceResource({ name: 'wp', namespace: 'ns', hostname: 'wp.ns.svc.cluster.local', addresses: [{ address: ip('10.96.9.1') }], ports: [{ servicePort: 15008, targetPort: 15008 }], loadBalancing: { healthPolicy: HealthPolicy.ALLOW_ALL } }),
  ]);
  assert.equal(decide(allowAll, 'wp', '10.96.0.10:80', WP_IP).kind, 'connect');
});

test('a PROXY app tunnel goes to loopback on its port with a header, and skips destination validation; RBAC sees the tunnel port, as ztunnel', () => {
  const state = mesh({ applicationTunnel: { protocol: 1, port: 15088 } });
  const d = decide(state, 'wp', '10.96.0.10:80', WP_IP);
  assert.deepEqual(d, {
    kind: 'connect', upstream: { ip: '127.0.0.1', port: 15088 }, from: 'loopback', proxyProtocol: true,
    authzDestination: { ip: WP_IP, port: 15088 }, service: state.services.byNamespacedHostname('ns', 'echo.ns.svc.cluster.local'),
  });
  // Not its waypoint, still accepted: the app behind the tunnel decides.
  const any = decide(state, 'wp', '10.0.1.6:9090', WP_IP);
  assert.equal(any.kind, 'connect');
});

test('LOCALHOST_APP_TUNNEL=false reaches the tunnel port on the pod IP from the client', () => {
  const d = decide(mesh({ applicationTunnel: { protocol: 1, port: 15088 } }), 'wp', '10.96.0.10:80', WP_IP, false);
  assert.deepEqual(d.kind === 'connect' ? [d.upstream, d.from, d.proxyProtocol] : d, [{ ip: WP_IP, port: 15088 }, 'client', true]);
});

test('an app tunnel with port 0 keeps the authority port; protocol NONE writes no header', () => {
  const d = decide(mesh({ applicationTunnel: { protocol: 0, port: 0 } }), 'wp', '10.96.0.10:80', WP_IP);
  assert.deepEqual(d.kind === 'connect' ? [d.upstream, d.from, d.proxyProtocol] : d, [{ ip: WP_IP, port: 80 }, 'client', false]);
});

test('plaintext (15006) to a PROXY application-tunnel port is refused: its sender could write the identity TLV itself', () => {
  const w = (tunnel: Parameters<typeof pod>[3]): Workload => must(mesh(tunnel).workloads.byUid('Kubernetes//Pod/ns/wp'));
  const onPort = w({ applicationTunnel: { protocol: 1, port: 15088 } });
  assert.match(plaintextRefusal(onPort, 15088) ?? '', /application tunnel/);
  assert.equal(plaintextRefusal(onPort, 8080), undefined, 'other ports of the pod take plain bytes');
  // A PROXY tunnel without a port puts the header in front of every port (decideInbound keeps the authority port).
  const everyPort = w({ applicationTunnel: { protocol: 1, port: 0 } });
  assert.match(plaintextRefusal(everyPort, 8080) ?? '', /application tunnel/);
  assert.equal(plaintextRefusal(w({ applicationTunnel: { protocol: 0, port: 15088 } }), 15088), undefined, 'protocol NONE: no header is trusted');
  assert.equal(plaintextRefusal(w({}), 15088), undefined);
});
