// SPDX-License-Identifier: Apache-2.0
// The pure parts of the benchmark: summaries over repetitions, and reading
// what wrk, iperf3 and /proc print (samples captured from real runs).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IperfError, parseIperfGbps } from './measure/iperf.ts';
import { parseStatTicks, parseStatusRssMb } from './measure/proc.ts';
import { median, spread } from './measure/stats.ts';
import { parseWrk, WrkError } from './measure/wrk.ts';

test('median, min and max over repetitions', () => {
  assert.equal(median([3]), 3);
  assert.equal(median([5, 1, 3]), 3);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.deepEqual(spread([0.2, 0.1, 0.4]), { min: 0.1, median: 0.2, max: 0.4 });
  const input = [3, 1, 2];
  spread(input);
  assert.deepEqual(input, [3, 1, 2], 'the input is not sorted in place');
  assert.throws(() => spread([]), RangeError);
  assert.throws(() => median([1, NaN]), RangeError);
});

// wrk 4.1.0 (Debian) `-t1 -c1 -d1s --latency` against nginx in the lab.
const WRK_SAMPLE = `Running 1s test @ http://10.244.1.10:8080/
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    45.21us   57.06us   1.76ms   99.35%
    Req/Sec    23.13k     1.03k   25.31k    63.64%
  Latency Distribution
     50%   39.00us
     75%   42.00us
     90%   51.00us
     99%   76.00us
  25259 requests in 1.10s, 3.61MB read
Requests/sec:  22966.72
Transfer/sec:      3.29MB
`;

test('wrk --latency output: percentiles in ms whatever unit wrk chose, rate, count', () => {
  const r = parseWrk(WRK_SAMPLE);
  assert.ok(Math.abs(r.p50Ms - 0.039) < 1e-12);
  assert.ok(Math.abs(r.p99Ms - 0.076) < 1e-12);
  assert.equal(r.rps, 22966.72);
  assert.equal(r.requests, 25259);
  assert.equal(r.errors, 0);

  const slow = WRK_SAMPLE.replace('50%   39.00us', '50%    1.25ms').replace('99%   76.00us', '99%    2.10s');
  assert.equal(parseWrk(slow).p50Ms, 1.25);
  assert.equal(parseWrk(slow).p99Ms, 2100);
});

test('wrk errors are counted: socket errors and non-2xx/3xx answers', () => {
  const failing = WRK_SAMPLE.replace('Requests/sec', '  Socket errors: connect 1, read 2, write 0, timeout 3\n  Non-2xx or 3xx responses: 4\nRequests/sec');
  assert.equal(parseWrk(failing).errors, 10);
});

test('wrk output without a latency distribution is refused, not read as zero', () => {
  const noLatency = WRK_SAMPLE.replace(/ {2}Latency Distribution[\s\S]*?99%.*\n/, '');
  assert.throws(() => parseWrk(noLatency), (e: Error) => e instanceof WrkError && /--latency/.test(e.message));
  assert.throws(() => parseWrk('unable to connect to 10.244.1.10:8080 Connection refused'), WrkError);
});

test('iperf3 -J: receiver bits/s in Gbit/s; its errors surface', () => {
  // Trimmed from iperf 3.12 -J (end section of a 1 s single-stream run).
  const report = JSON.stringify({
    start: { version: 'iperf 3.12' },
    end: {
      sum_sent: { seconds: 1.000177, bytes: 2351431680, bits_per_second: 18808124401.980846, retransmits: 90, sender: true },
      sum_received: { seconds: 1.000223, bytes: 2345140224, bits_per_second: 18756938994.6042, sender: true },
    },
  });
  assert.ok(Math.abs(parseIperfGbps(report) - 18.7569) < 1e-3);
  assert.throws(() => parseIperfGbps(JSON.stringify({ start: {}, end: {}, error: 'unable to connect to server: Connection refused' })), /Connection refused/);
  assert.throws(() => parseIperfGbps('iperf3: error'), IperfError);
  assert.throws(() => parseIperfGbps(JSON.stringify({ end: { sum_received: { bits_per_second: 0 } } })), IperfError);
});

test('/proc/<pid>/stat: utime + stime, also when the command name has spaces and parentheses', () => {
  const stat = '11245 (cat) R 11243 11243 9988 0 -1 4194304 100 0 0 0 7 5 0 0 20 0 1 0 682666 3133440 358 18446744073709551615';
  assert.equal(parseStatTicks(stat), 12);
  assert.equal(parseStatTicks(stat.replace('(cat)', '(a) b (c)')), 12);
  assert.throws(() => parseStatTicks('1 (x) R 0'));
});

test('/proc/<pid>/status: VmRSS in MiB', () => {
  assert.equal(parseStatusRssMb('Name:\tcat\nVmHWM:\t    2048 kB\nVmRSS:\t    1536 kB\nThreads:\t1\n'), 1.5);
  assert.throws(() => parseStatusRssMb('Name:\tkthreadd\nThreads:\t1\n'), /VmRSS/);
});
