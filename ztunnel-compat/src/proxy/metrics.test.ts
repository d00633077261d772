// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { TcpMetrics, tcpLabels, type ConnectionFacts } from './metrics.ts';

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
    const l = tcpLabels(facts()); // a fresh object each time, as per connection
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
