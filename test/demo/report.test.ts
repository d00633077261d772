// SPDX-License-Identifier: Apache-2.0
// The demo's pure parts: the mesh it writes is one the daemon accepts, and
// the summary says what failed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readLocalConfig } from '@skein/ztunnel-compat/xds/local';
import { parseAccess, describe } from './access-log.ts';
import { meshYaml, PODS } from './mesh.ts';
import { allOk, toJson, toText, type DemoReport, type PathReport } from './report.ts';

test('the demo mesh is valid static config: every enrolled pod, three services, the DENY policy', () => {
  const ips = new Map(PODS.map((p, i) => [p.name, `10.244.${p.node}.${10 + i}`]));
  const cfg = readLocalConfig({ inline: meshYaml((n) => ips.get(n) ?? '0.0.0.0') });
  const names = cfg.addresses.map((a) => a.name).sort();
  assert.equal(names.filter((n) => n.startsWith('Kubernetes//Pod/')).length, PODS.filter((p) => p.enrolled).length);
  assert.ok(!names.includes('Kubernetes//Pod/default/outside'), 'the non-mesh pod is not a workload');
  assert.deepEqual(cfg.policies.map((p) => p.name), ['default/deny-blocked']);
});

const path = (over: Partial<PathReport>): PathReport => ({
  path: 'cross-node-hbone', taken: true, ok: true, bytes: 1 << 20, latency_ms: 1.5, decision: 'allowed', evidence: 'counters', ...over,
});

test('the summary names each path and says when one misbehaved', () => {
  const good: DemoReport = { paths: [path({}), path({ path: 'denied', bytes: 0, decision: 'denied by default/deny-blocked' })], pending: ['fast paths'], look: ['.skein/demo/'] };
  assert.ok(allOk(good));
  const text = toText(good);
  assert.match(text, /cross-node-hbone\s+taken\s+ok\s+1\.0 MiB\s+1\.50 ms/);
  assert.match(text, /decision: denied by default\/deny-blocked/);
  assert.match(text, /All paths behaved as expected/);
  const bad: DemoReport = { ...good, paths: [path({ taken: false })] };
  assert.equal(allOk(bad), false);
  assert.match(toText(bad), /NOT TAKEN[\s\S]*did not behave as expected/);
  const failed = toText({ ...good, paths: [path({ ok: false, failure: 'the 1 MiB request: curl exit 28' })] });
  assert.match(failed, /FAILED[\s\S]*failure: {2}the 1 MiB request: curl exit 28[\s\S]*did not behave as expected/);
  assert.doesNotMatch(text, /failure:/, 'a path that behaved has no failure line');
  assert.equal(allOk({ ...good, paths: [] }), false, 'no paths is not success');
  assert.deepEqual(JSON.parse(toJson(good)), good);
});

test('access-log lines are read back from JSON logs, other scopes and partial lines ignored', () => {
  const lines = parseAccess([
    '{"level":"info","scope":"xds","message":"connected"}',
    '{"level":"warn","scope":"access","direction":"inbound","src.addr":"10.0.0.1:4000","src.workload":"c","src.namespace":"a","dst.workload":"s","dst.namespace":"b","error":"RBAC: denied","message":"connection failed"}',
    '{"level":"info","scope":"acc',
  ].join('\n'));
  assert.equal(lines.length, 1);
  assert.equal(describe(lines[0] ?? {}), 'inbound a/c → b/s: connection failed (RBAC: denied)');
});
