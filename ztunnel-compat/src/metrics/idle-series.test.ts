// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Counter, Histogram, Registry } from 'prom-client';
import { DnsMetrics } from '../dns/metrics.ts';
import { IdleSeries, sweepEveryMs } from './idle-series.ts';

/** The label sets of `name`'s samples in a scrape (its series). */
async function series(r: Registry, name: string): Promise<string[]> {
  return (await r.metrics()).split('\n').filter((l) => l.startsWith(`${name}{`)).map((l) => l.slice(0, l.lastIndexOf(' ')));
}

test('a label set nothing counted for the interval leaves every metric of its group; one still counting stays', async () => {
  let now = 0;
  const r = new Registry();
  const idle = new IdleSeries({ evictAfterMs: 1000, now: () => now });
  const c = new Counter({ name: 'c_total', help: 'c', labelNames: ['who'] as const, registers: [r] });
  const h = new Histogram({ name: 'h_seconds', help: 'h', labelNames: ['who'] as const, registers: [r], buckets: [1] });
  const used = idle.group([c, h]);
  const count = (who: string): void => {
    c.inc({ who });
    h.observe({ who }, 0.5);
    used({ who });
  };
  count('job-1');
  count('web');
  now = 600;
  count('web');
  now = 999;
  assert.equal(idle.evictIdle(), 0, 'not idle for the interval yet');
  now = 1000;
  assert.equal(idle.evictIdle(), 1);
  assert.deepEqual(await series(r, 'c_total'), ['c_total{who="web"}']);
  assert.doesNotMatch(await r.metrics(), /who="job-1"/, 'the histogram series went with the counter');
  now = 1600;
  assert.equal(idle.evictIdle(), 1);
  assert.deepEqual(await series(r, 'c_total'), []);
  count('job-1'); // back: from zero
  assert.match(await r.metrics(), /c_total\{who="job-1"\} 1\n/);
  idle.close();
});

test('an interval of 0 drops nothing', async () => {
  let now = 0;
  const r = new Registry();
  const idle = new IdleSeries({ evictAfterMs: 0, now: () => now });
  const c = new Counter({ name: 'c_total', help: 'c', labelNames: ['who'] as const, registers: [r] });
  const used = idle.group([c]);
  c.inc({ who: 'a' });
  used({ who: 'a' });
  now = 365 * 86_400_000;
  assert.equal(idle.evictIdle(), 0);
  assert.equal((await series(r, 'c_total')).length, 1);
});

test("the DNS proxy's metrics drop an asking workload that stopped asking", async () => {
  let now = 0;
  const r = new Registry();
  const idle = new IdleSeries({ evictAfterMs: 60_000, now: () => now });
  const m = new DnsMetrics(r, idle);
  // As DnsMetrics.labels makes them from the asking workload (a Job's pod, then a Deployment's).
  const from = (service: string): Parameters<DnsMetrics['request']>[0] => ({
    request_query_type: 'A', request_protocol: 'udp', source_canonical_service: service, source_canonical_revision: 'latest',
  });
  m.request(from('job-7f2c'));
  m.upstream(from('job-7f2c'), 0.002, false);
  now = 30_000;
  m.request(from('web'));
  now = 60_000;
  assert.equal(idle.evictIdle(), 1);
  const text = await r.metrics();
  assert.doesNotMatch(text, /source_canonical_service="job-7f2c"/, 'requests, upstream, failures and the duration histogram');
  assert.match(text, /istio_dns_requests_total\{[^}]*source_canonical_service="web"[^}]*\} 1/);
});

test('the sweep runs every quarter of the interval, never more often than a second nor less often than a timer can wait', () => {
  assert.equal(sweepEveryMs(3_600_000), 900_000);
  assert.equal(sweepEveryMs(2000), 1000);
  assert.equal(sweepEveryMs(1000 * 86_400_000), 0x7fff_ffff, 'a thousand days: Node would fire a longer timer at once');
});
