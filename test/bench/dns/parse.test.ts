// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DnsperfError, parseDnsperf } from './run.ts';

test('dnsperf\'s summary: queries per second, average latency in ms, share lost', () => {
  const out = `DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -s 10.244.0.12 -d q -l 2 -t 2 -c 4
Statistics:

  Queries sent:         153001
  Queries completed:    152998 (100.00%)
  Queries lost:         3 (0.00%)

  Response codes:       NOERROR 152998 (100.00%)
  Average packet size:  request 30, response 46
  Run time (s):         2.000030
  Queries per second:   76497.856

  Average Latency (s):  0.000068 (min 0.000021, max 0.001893)
  Latency StdDev (s):   0.000031
`;
  assert.deepEqual(parseDnsperf(out), { qps: 76497.856, avg_ms: 0.068, lost_pct: 0 });
  assert.throws(() => parseDnsperf('dnsperf: could not open file'), DnsperfError);
});
