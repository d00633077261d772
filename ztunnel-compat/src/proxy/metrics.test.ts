// SPDX-License-Identifier: Apache-2.0
import { markCarried } from './carried.ts';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Socket } from 'node:net';
import { Registry } from 'prom-client';
import { dashboardMetricNames } from '../../../test/compat/istio-files.ts';
import { LOCALITY_LABELS, SOCKETS_OPEN, UNKNOWN } from '../../../test/compat/ztunnel-facts.ts';
import { ProxyState } from '../state/store.ts';
import { ip, pod, serviceResource, workloadResource } from '../state/testing.ts';
import { ProxyStateUpdater } from '../state/updater.ts';
import { IdleSeries } from '../metrics/idle-series.ts';
import { guessInboundService, OPEN_KEEPS, TcpMetrics, tcpLabels, type ConnectionFacts } from './metrics.ts';

const facts = (over: Partial<ConnectionFacts> = {}): ConnectionFacts => ({
  reporter: 'source', source: undefined, sourceIdentity: { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'client' },
  destination: undefined, destinationService: undefined, mtls: true, flag: '-', ...over,
});

/** The sample of `name` whose labels include `match`, or undefined. */
async function sample(r: Registry, name: string, match: string): Promise<number | undefined> {
  const text = await r.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(match));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

test('connections with the same labels add up in one series; bytes as sums', async () => {
  const r = new Registry();
  const m = new TcpMetrics(r);
  for (let i = 0; i < 3; i++) {
    const l = tcpLabels(facts()); // per connection, as the proxy does
    m.opened(l);
    m.closed(l, 100, 1000);
  }
  const who = 'source_principal="spiffe://cluster.local/ns/default/sa/client"';
  assert.equal(await sample(r, 'istio_tcp_connections_opened_total', who), 3);
  assert.equal(await sample(r, 'istio_tcp_connections_closed_total', who), 3);
  assert.equal(await sample(r, 'istio_tcp_received_bytes_total', who), 300);
  assert.equal(await sample(r, 'istio_tcp_sent_bytes_total', who), 3000);
});

test('counts keep growing across scrapes, and other label sets are other series', async () => {
  const r = new Registry();
  const m = new TcpMetrics(r);
  m.opened(tcpLabels(facts()));
  const who = 'sa/client"';
  assert.equal(await sample(r, 'istio_tcp_connections_opened_total', who), 1);
  m.opened(tcpLabels(facts()));
  m.failed(tcpLabels(facts({ flag: 'CONNECT', sourceIdentity: { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'other' } })));
  assert.equal(await sample(r, 'istio_tcp_connections_opened_total', who), 2, 'the second scrape adds to the first');
  assert.equal(await sample(r, 'istio_tcp_connections_failed_total', 'sa/other"'), 1);
  assert.match(await r.metrics(), /istio_tcp_connections_failed_total\{[^}]*response_flags="CONNECT"/);
  assert.equal(await sample(r, 'istio_tcp_connections_failed_total', who), undefined, 'no failure series for a label set that never failed');
});

test('a connection that moved no bytes adds no byte series', async () => {
  const r = new Registry();
  const m = new TcpMetrics(r);
  const l = tcpLabels(facts());
  m.opened(l);
  m.closed(l, 0, 0);
  assert.equal(await sample(r, 'istio_tcp_connections_closed_total', 'sa/client"'), 1);
  assert.equal(await sample(r, 'istio_tcp_sent_bytes_total', 'sa/client"'), undefined);
  assert.equal(await sample(r, 'istio_tcp_received_bytes_total', 'sa/client"'), undefined);
});

function state(): ProxyState {
  const s = new ProxyState();
  new ProxyStateUpdater(s).addressHandler.handle([
    workloadResource(pod('client', 'a', '10.0.0.1', { locality: { region: 'eu-west', zone: 'eu-west-1a', subzone: '' } })),
    workloadResource(pod('server', 'b', '10.0.0.2', { canonicalRevision: '', services: { 'b/web.b.svc.cluster.local': { ports: [{ servicePort: 80, targetPort: 8080 }] }, 'b/admin.b.svc.cluster.local': { ports: [{ servicePort: 9000, targetPort: 9090 }] } } })),
    serviceResource({ name: 'admin', namespace: 'b', hostname: 'admin.b.svc.cluster.local', addresses: [{ address: ip('10.96.0.2') }], ports: [{ servicePort: 9000, targetPort: 9090 }] }),
    serviceResource({ name: 'web', namespace: 'b', hostname: 'web.b.svc.cluster.local', addresses: [{ address: ip('10.96.0.1') }], ports: [{ servicePort: 80, targetPort: 8080 }] }),
  ], []);
  return s;
}

test("istio_tcp_* carry ztunnel's locality labels, from each workload's locality, unknown when it has none", async () => {
  const s = state();
  const l = tcpLabels(facts({ source: s.workloads.byAddress('', '10.0.0.1'), destination: s.workloads.byAddress('', '10.0.0.2') }));
  for (const name of LOCALITY_LABELS) assert.ok(name in l, `label ${name}`);
  assert.deepEqual([l.source_region, l.source_zone, l.destination_region, l.destination_zone], ['eu-west', 'eu-west-1a', UNKNOWN, UNKNOWN]);
  const r = new Registry();
  new TcpMetrics(r).opened(l);
  assert.match(await r.metrics(), /istio_tcp_connections_opened_total\{[^}]*source_region="eu-west",source_zone="eu-west-1a",destination_region="unknown",destination_zone="unknown"\} 1/);
});

test('the same facts give the same labels object; an updated workload gives its new values', () => {
  const s = state();
  const updater = new ProxyStateUpdater(s);
  const source = s.workloads.byAddress('', '10.0.0.1');
  const destination = s.workloads.byAddress('', '10.0.0.2');
  const l = tcpLabels(facts({ source, destination }));
  // An identity is a fresh object per connection: its URI is what counts.
  assert.equal(tcpLabels(facts({ source, destination, sourceIdentity: { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'client' } })), l);
  assert.ok(Object.isFrozen(l), 'shared, so never changed');
  const denied = tcpLabels(facts({ source, destination, flag: 'DENY' }));
  assert.notEqual(denied, l);
  assert.deepEqual([denied.response_flags, l.response_flags], ['DENY', '-']);
  const other = tcpLabels(facts({ source, destination, sourceIdentity: { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'other' } }));
  assert.equal(other.source_principal, 'spiffe://cluster.local/ns/default/sa/other');
  // An xDS update replaces the workload: its connections get the new revision.
  updater.addressHandler.handle([workloadResource(pod('client', 'a', '10.0.0.1', { canonicalRevision: 'v2' }))], []);
  const updated = s.workloads.byAddress('', '10.0.0.1');
  assert.notEqual(updated, source);
  assert.equal(tcpLabels(facts({ source: updated, destination })).source_version, 'v2');
  assert.equal(tcpLabels(facts({ source, destination })).source_version, l.source_version, 'the old object keeps its own');
});

test('a workload without a canonical revision is labelled unknown, never latest', () => {
  const s = state();
  const l = tcpLabels(facts({ source: s.workloads.byAddress('', '10.0.0.2'), destination: s.workloads.byAddress('', '10.0.0.2') }));
  assert.deepEqual([l.source_canonical_revision, l.source_version, l.destination_canonical_revision, l.destination_version], [UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN]);
});

test('a connection that ends in an error is closed and also counted as failed', async () => {
  const r = new Registry();
  const m = new TcpMetrics(r);
  const l = tcpLabels(facts());
  m.opened(l);
  m.closed(l, 10, 20, new Error('reset'));
  m.opened(l);
  m.closed(l, 10, 20);
  assert.equal(await sample(r, 'istio_tcp_connections_closed_total', 'sa/client"'), 2);
  assert.equal(await sample(r, 'istio_tcp_connections_failed_total', 'sa/client"'), 1);
});

test("open sockets: Istio's ztunnel dashboard reads istio_tcp_sockets_open, labelled by reporter as in ztunnel", async () => {
  assert.ok(dashboardMetricNames().has(SOCKETS_OPEN.name), 'the dashboard names it');
  const r = new Registry();
  const m = new TcpMetrics(r);
  const a = new Socket();
  const b = new Socket();
  m.socketOpened('source', a);
  m.socketOpened('destination', b);
  m.socketOpened('destination', new Socket());
  const lines = (await r.metrics()).split('\n').filter((x) => x.startsWith(`${SOCKETS_OPEN.name}{`));
  assert.deepEqual(lines.sort(), [`${SOCKETS_OPEN.name}{reporter="destination"} 2`, `${SOCKETS_OPEN.name}{reporter="source"} 1`]);
  for (const line of lines) assert.deepEqual([...line.matchAll(/(\w+)="/g)].map((x) => x[1]), [...SOCKETS_OPEN.labels]);
  b.destroy();
  await new Promise((res) => setImmediate(res));
  assert.equal(await sample(r, SOCKETS_OPEN.name, 'reporter="destination"'), 1);
  // Handed to the native engine: Node's copy closes, the connection is open until the engine is done with it.
  let done: () => void = () => undefined;
  markCarried(a, new Promise((res) => { done = res; }));
  a.destroy();
  await new Promise((res) => setImmediate(res));
  assert.equal(await sample(r, SOCKETS_OPEN.name, 'reporter="source"'), 1);
  done();
  await new Promise((res) => setImmediate(res));
  assert.equal(await sample(r, SOCKETS_OPEN.name, 'reporter="source"'), 0);
});

test("a pod IP dialled is labelled with the pod's service whose target port it is (ztunnel's guess_inbound_service)", () => {
  const s = state();
  const server = s.workloads.byAddress('', '10.0.0.2');
  assert.ok(server !== undefined);
  const services = s.services.forWorkload(server);
  assert.equal(guessInboundService(services, server, 8080)?.hostname, 'web.b.svc.cluster.local');
  assert.equal(guessInboundService(services, server, 9090)?.hostname, 'admin.b.svc.cluster.local');
  assert.equal(guessInboundService(services, server, 7000), undefined);
  assert.equal(guessInboundService(services, server, 7000, 'admin.b.svc.cluster.local')?.hostname, 'admin.b.svc.cluster.local', 'Forwarded host= names it');
  assert.equal(guessInboundService(services, server, 8080, 'other.c.svc.cluster.local')?.hostname, 'web.b.svc.cluster.local', 'a host that is not one of its services is ignored');
});

/** Series (label sets) of istio_tcp_connections_opened_total in a scrape. */
async function openedSeries(r: Registry): Promise<string[]> {
  return (await r.metrics()).split('\n').filter((l) => l.startsWith('istio_tcp_connections_opened_total{'));
}

test('a label set with no open connection and nothing new for the eviction interval leaves the scrape; one still open stays', async () => {
  const r = new Registry();
  let now = 0;
  const idle = new IdleSeries({ evictAfterMs: 60_000, now: () => now });
  const m = new TcpMetrics(r, idle);
  const as = (sa: string): ConnectionFacts => facts({ sourceIdentity: { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: sa } });
  const done = tcpLabels(as('job-1')); // a Job's pod: its name is never seen again
  m.opened(done);
  m.closed(done, 10, 20);
  const held = tcpLabels(as('db-client')); // a connection open for days
  m.opened(held);
  assert.equal((await openedSeries(r)).length, 2);

  now = 59_999;
  assert.equal(idle.evictIdle(), 0, 'not idle for the interval yet');
  now = 60_000;
  assert.equal(idle.evictIdle(), 1);
  const left = await openedSeries(r);
  assert.equal(left.length, 1);
  assert.match(left[0] ?? '', /sa\/db-client"/);
  for (const name of ['closed_total', 'sent_bytes_total', 'received_bytes_total']) {
    assert.doesNotMatch(await r.metrics(), new RegExp(`istio_tcp_[a-z_]*${name}\\{[^}]*sa/job-1"`), `${name} of the idle set is gone too`);
  }
  assert.equal(m.seriesCount, 1);

  now = 10 * 60_000;
  assert.equal(idle.evictIdle(), 0, 'open: kept, ten intervals on');
  m.closed(held, 5, 5);
  assert.equal(await sample(r, 'istio_tcp_connections_closed_total', 'sa/db-client"'), 1);
  now += 60_000;
  assert.equal(idle.evictIdle(), 1, 'closed and idle for the interval: dropped');
  assert.deepEqual(await openedSeries(r), []);
  assert.equal(m.seriesCount, 0);

  m.opened(done); // the same labels again: a new series from zero (a counter reset to Prometheus)
  assert.equal(await sample(r, 'istio_tcp_connections_opened_total', 'sa/job-1"'), 1);
});

test('activity keeps a label set; counts taken before its eviction are not added back; interval 0 evicts nothing', async () => {
  const r = new Registry();
  let now = 0;
  const idle = new IdleSeries({ evictAfterMs: 1000, now: () => now });
  const m = new TcpMetrics(r, idle);
  const l = tcpLabels(facts());
  for (let i = 0; i < 5; i++) {
    m.opened(l);
    m.closed(l, 1, 1);
    now += 600; // less than the interval between connections
    assert.equal(idle.evictIdle(), 0);
  }
  assert.equal(await sample(r, 'istio_tcp_connections_opened_total', 'sa/client"'), 5);
  m.opened(l);
  m.closed(l, 1, 1); // counted, not scraped yet
  now += 1000;
  assert.equal(idle.evictIdle(), 1);
  assert.deepEqual(await openedSeries(r), [], 'what was waiting for the scrape went with the set');

  const keeping = new IdleSeries({ evictAfterMs: 0, now: () => now });
  const kept = new TcpMetrics(new Registry(), keeping);
  kept.opened(l);
  kept.closed(l, 1, 1);
  now += 365 * 86_400_000;
  assert.equal(keeping.evictIdle(), 0);
  assert.equal(kept.seriesCount, 1);
});

test('a label set whose open count is stuck (a close lost, or labelled otherwise) goes after OPEN_KEEPS intervals with nothing counted', async () => {
  const r = new Registry();
  let now = 0;
  const idle = new IdleSeries({ evictAfterMs: 1000, now: () => now });
  const m = new TcpMetrics(r, idle);
  m.opened(tcpLabels(facts())); // its close never comes
  now = OPEN_KEEPS * 1000 - 1;
  assert.equal(idle.evictIdle(), 0, 'still taken for an open connection');
  now = OPEN_KEEPS * 1000;
  assert.equal(idle.evictIdle(), 1);
  assert.deepEqual(await openedSeries(r), []);
});
