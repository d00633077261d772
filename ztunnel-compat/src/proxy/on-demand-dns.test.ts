// SPDX-License-Identifier: Apache-2.0
// On-demand DNS against a small DNS server on loopback (port 53 needs root):
// the family the client dialled wins, answers are kept for their TTL, and
// one lookup serves every caller waiting for the same name.
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import packet from 'dns-packet';
import { Registry } from 'prom-client';
import { IdleSeries } from '../metrics/idle-series.ts';
import { OnDemandDns, OnDemandDnsError, type OnDemandDnsLabels } from './on-demand-dns.ts';

const why = process.getuid?.() === 0 ? false : 'needs root (a DNS server on loopback port 53)';
const SERVER = '127.0.0.153';
const RECORDS: Record<string, { A?: string[]; AAAA?: string[] }> = {
  'dual.test': { A: ['192.0.2.1'], AAAA: ['2001:db8::1'] },
  'v6only.test': { AAAA: ['2001:db8::2'] },
};
let queries = 0;
let server: dgram.Socket | undefined;
let dir = '';

const labels = (hostname: string): OnDemandDnsLabels => ({
  source_workload: 'w', source_canonical_service: 'w', source_canonical_revision: 'latest', source_workload_namespace: 'ns',
  source_principal: 'unknown', source_app: 'w', source_version: 'latest', source_cluster: 'Kubernetes', hostname,
});

before(async () => {
  if (why !== false) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skein-odd-'));
  fs.writeFileSync(path.join(dir, 'resolv.conf'), `nameserver ${SERVER}\n`);
  server = dgram.createSocket('udp4');
  server.on('message', (msg, from) => {
    const q = packet.decode(msg);
    const question = q.questions?.[0];
    if (question === undefined) return;
    queries++;
    const type = question.type as 'A' | 'AAAA';
    const ips = RECORDS[question.name]?.[type] ?? [];
    const flags = RECORDS[question.name] === undefined ? 3 : 0; // NXDOMAIN for unknown names
    server?.send(packet.encode({ type: 'response', id: q.id ?? 0, flags, questions: [question], answers: ips.map((data) => ({ name: question.name, type, class: 'IN', ttl: 60, data })) }), from.port, from.address);
  });
  await new Promise<void>((resolve) => { server?.bind(53, SERVER, resolve); });
});

after(() => {
  server?.close();
  if (dir !== '') fs.rmSync(dir, { recursive: true, force: true });
});

test('the dialled family wins; the other family serves when it is all there is', { skip: why }, async () => {
  const d = new OnDemandDns({ resolvConf: path.join(dir, 'resolv.conf'), ipv6: true, registry: new Registry() });
  assert.equal(await d.resolve('dual.test', '10.96.0.1', labels('dual.test')), '192.0.2.1');
  assert.equal(await d.resolve('dual.test', 'fd00::1', labels('dual.test')), '2001:db8::1');
  assert.equal(await d.resolve('v6only.test', '10.96.0.1', labels('v6only.test')), '2001:db8::2');
  await assert.rejects(d.resolve('nowhere.test', '10.96.0.1', labels('nowhere.test')), OnDemandDnsError);
});

test('answers are kept for their TTL, and concurrent callers share one lookup', { skip: why }, async () => {
  let now = 1_000_000;
  const registry = new Registry();
  const d = new OnDemandDns({ resolvConf: path.join(dir, 'resolv.conf'), ipv6: false, registry, now: () => now });
  const before = queries;
  await Promise.all([1, 2, 3].map(() => d.resolve('dual.test', '10.96.0.1', labels('dual.test'))));
  assert.equal(queries - before, 1, 'one A query for three callers (AAAA not asked with IPv6 off)');
  now += 59_000;
  await d.resolve('dual.test', '10.96.0.1', labels('dual.test'));
  assert.equal(queries - before, 1, 'still within the 60 s TTL');
  now += 2_000;
  await d.resolve('dual.test', '10.96.0.1', labels('dual.test'));
  assert.equal(queries - before, 2, 'expired: asked again');
  const m = await registry.metrics();
  assert.match(m, /istio_on_demand_dns_total\{[^}]*hostname="dual\.test"\} 5/);
  assert.match(m, /istio_on_demand_dns_cache_misses_total\{[^}]*hostname="dual\.test"\} 4/);
});

test('a name not looked up again leaves the cache once its answer expired', { skip: why }, async () => {
  let now = 1_000_000;
  const d = new OnDemandDns({ resolvConf: path.join(dir, 'resolv.conf'), ipv6: true, registry: new Registry(), now: () => now });
  await d.resolve('dual.test', '10.96.0.1', labels('dual.test'));
  await d.resolve('v6only.test', '10.96.0.1', labels('v6only.test'));
  assert.equal(d.cached, 2);
  now += 61_000;
  await d.resolve('dual.test', '10.96.0.1', labels('dual.test'));
  assert.equal(d.cached, 1, 'v6only.test, expired and not asked for, is gone');
});

test("a workload's on-demand DNS series leave the scrape once it stopped asking for the eviction interval", { skip: why }, async () => {
  let now = 0;
  const registry = new Registry();
  const idle = new IdleSeries({ evictAfterMs: 60_000, now: () => now });
  const d = new OnDemandDns({ resolvConf: path.join(dir, 'resolv.conf'), ipv6: false, registry, idle });
  await d.resolve('dual.test', '10.96.0.1', labels('dual.test'));
  assert.match(await registry.metrics(), /istio_on_demand_dns_cache_misses_total\{[^}]*hostname="dual\.test"\} 1/);
  now = 60_000;
  assert.equal(idle.evictIdle(), 1);
  assert.doesNotMatch(await registry.metrics(), /hostname="dual\.test"/, 'both counters');
});
