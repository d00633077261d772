// SPDX-License-Identifier: Apache-2.0
// The lab refuses declarations it cannot build before touching the system.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LabSpecError, MAX_PODS_PER_NODE, planLab } from './plan.ts';

test('a 2x2 plan has unique names, per-node pod ranges and canonical IPv6', () => {
  const p = planLab({ nodes: 2, podsPerNode: 2 }, 'abcd');
  assert.equal(p.fabricNetns, 'skl-abcd-fab');
  assert.deepEqual(p.nodes.map((n) => [n.name, n.netns, n.ip4, n.ip6]), [
    ['node0', 'skl-abcd-n0', '172.31.0.10', 'fd00:31::a'],
    ['node1', 'skl-abcd-n1', '172.31.0.11', 'fd00:31::b'],
  ]);
  assert.deepEqual(p.nodes[1]?.pods.map((x) => [x.name, x.netns, x.ip4, x.ip6]), [
    ['pod1-0', 'skl-abcd-n1p0', '10.244.1.10', 'fd00:244:1::a'],
    ['pod1-1', 'skl-abcd-n1p1', '10.244.1.11', 'fd00:244:1::b'],
  ]);
  const uids = p.nodes.flatMap((n) => n.pods.map((x) => x.uid));
  assert.equal(new Set(uids).size, 4);
  for (const u of uids) assert.match(u, /^[0-9a-f]{8}-0000-4000-8000-[0-9a-f]{12}$/);
});

test('explicit pods keep their names, namespaces, service accounts and addresses', () => {
  const p = planLab({ nodes: [{ name: 'worker', pods: [{ name: 'client', namespace: 'app', serviceAccount: 'sleep', ip4: '10.244.0.20' }, { name: 'server' }] }] }, 'abcd');
  const [client, server] = p.nodes[0]?.pods ?? [];
  assert.deepEqual([client?.name, client?.namespace, client?.serviceAccount, client?.ip4, client?.ip6], ['client', 'app', 'sleep', '10.244.0.20', 'fd00:244::14']);
  assert.equal(server?.ip4, '10.244.0.10');
});

test('bad declarations are refused with a clear message', () => {
  const bad: [Parameters<typeof planLab>[0], RegExp][] = [
    [{ nodes: 0 }, /at least one node/],
    [{ nodes: 51 }, /too many nodes: 51/],
    [{ nodes: 1, podsPerNode: MAX_PODS_PER_NODE + 1 }, /too many pods on node0/],
    [{ nodes: 1.5 }, /non-negative integer/],
    [{ nodes: [{ pods: [{ name: 'a', ip4: '10.244.0.10' }, { name: 'b', ip4: '10.244.0.10' }] }] }, /pods default\/a and default\/b overlap on address 10\.244\.0\.10/],
    [{ nodes: [{ pods: [{ name: 'a', ip4: '10.244.1.10' }] }] }, /outside node0's pod range/],
    [{ nodes: [{ pods: [{ name: 'a', ip4: '10.244.0.5' }] }] }, /outside/],
    [{ nodes: [{ pods: [{ name: 'a' }, { name: 'a' }] }] }, /duplicate pod 'default\/a'/],
    [{ nodes: [{ name: 'x', pods: 0 }, { name: 'x', pods: 0 }] }, /duplicate node name 'x'/],
    [{ nodes: [{ pods: [{ name: 'Bad_Name' }] }] }, /pod name 'Bad_Name' is not a DNS label/],
    [{ nodes: [{ pods: 1 }], podsPerNode: 2 }, /podsPerNode only applies/],
  ];
  for (const [spec, msg] of bad) assert.throws(() => planLab(spec, 'abcd'), (e: Error) => e instanceof LabSpecError && msg.test(e.message), JSON.stringify(spec));
});
