// SPDX-License-Identifier: Apache-2.0
// istio-cni's in-pod rules, installed with the real iptables tools in a lab
// pod, capture what they should and let the node proxy's own traffic through.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { connectTcp, listenTcp, originalDst, type SocketAddress } from '@skein/bpf';
import { Lab, type LabPod } from '../lab/index.ts';
import { INPOD_MARK, inpodRules, installInpodRules, PORTS, removeInpodRules } from './inpod-rules.ts';

const needsRoot = process.getuid?.() === 0 ? false : 'needs root (network namespaces, iptables)';
let lab: Lab | undefined;
const pods = (): [LabPod, LabPod] => {
  const a = lab?.nodes[0]?.pods[0];
  const b = lab?.nodes[1]?.pods[0];
  if (a === undefined || b === undefined) throw new Error('lab not built');
  return [a, b];
};

before(() => {
  if (needsRoot) return;
  lab = Lab.create({ nodes: 2, podsPerNode: 1 });
  installInpodRules(pods()[0].netns);
});
after(() => { lab?.teardown(); });

/** A capture listener inside the pod, as the node proxy would open it. */
async function capture(pod: LabPod, port: number, address = '0.0.0.0'): Promise<{ server: net.Server; next: () => Promise<{ dst: SocketAddress; peer: string }> }> {
  const queue: { dst: SocketAddress; peer: string }[] = [];
  const waiters: ((v: { dst: SocketAddress; peer: string }) => void)[] = [];
  const server = await listenTcp({ address, port, netns: pod.netnsPath, mark: INPOD_MARK }, (s) => {
    const v = { dst: originalDst(s), peer: s.remoteAddress ?? '' };
    s.destroy();
    const w = waiters.shift();
    if (w) w(v); else queue.push(v);
  });
  return {
    server,
    next: () => {
      const v = queue.shift();
      return v ? Promise.resolve(v) : new Promise((r) => waiters.push(r));
    },
  };
}

test('the rules are exactly istio-cni\'s (as iptables-save prints them back)', { skip: needsRoot }, () => {
  for (const [family, save] of [[4, 'iptables-save'], [6, 'ip6tables-save']] as const) {
    const saved = pods()[0].run(save).split('\n').filter((l) => l.startsWith('-A')).sort();
    const wanted = inpodRules(family).split('\n').filter((l) => l.startsWith('-A')).sort();
    assert.deepEqual(saved, wanted);
  }
  assert.match(pods()[0].run('ip', 'rule'), /32764:\s+from all fwmark 0x111\/0xfff lookup 100/);
  assert.match(pods()[0].run('ip', 'route', 'show', 'table', '100'), /local default dev lo/);
  assert.match(pods()[0].run('ip', '-6', 'rule'), /fwmark 0x111\/0xfff lookup 100/);
});

test('a pod\'s outbound TCP is captured on 15001 with its original destination', { skip: needsRoot }, async () => {
  const [a, b] = pods();
  const cap = await capture(a, PORTS.outbound);
  const cap6 = await capture(a, PORTS.outbound, '::');
  const r = await a.exec('bash', ['-c', `exec 3<>/dev/tcp/${b.ip4}/8080`], { timeoutMs: 5000 });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual((await cap.next()).dst, { address: b.ip4, port: 8080, family: 4 });
  const r6 = await a.exec('bash', ['-c', `exec 3<>/dev/tcp/${b.ip6}/9090`], { timeoutMs: 5000 });
  assert.equal(r6.code, 0, r6.stderr);
  assert.deepEqual((await cap6.next()).dst, { address: b.ip6, port: 9090, family: 6 });
  cap.server.close();
  cap6.server.close();
});

test('sockets marked 0x539 (the node proxy\'s own) are not captured', { skip: needsRoot }, async () => {
  const [a, b] = pods();
  const cap = await capture(a, PORTS.outbound);
  const reached = Promise.withResolvers<string>();
  const server = await listenTcp({ address: b.ip4, port: 8080, netns: b.netnsPath }, (s) => { reached.resolve(s.remoteAddress ?? ''); s.end(); });
  const s = connectTcp({ address: b.ip4, port: 8080, netns: a.netnsPath, mark: INPOD_MARK });
  s.resume();
  assert.equal(await reached.promise, a.ip4, 'the marked connection went straight to the destination');
  s.destroy();
  server.close();
  cap.server.close();
});

test('inbound TCP is captured on 15006, but 15008 is reached directly', { skip: needsRoot }, async () => {
  const [a, b] = pods();
  const inbound = await capture(a, PORTS.inbound);
  const hbone = Promise.withResolvers<number>();
  const hboneServer = await listenTcp({ address: a.ip4, port: PORTS.hbone, netns: a.netnsPath, mark: INPOD_MARK }, (s) => { hbone.resolve(s.localPort ?? 0); s.destroy(); });
  const r = await b.exec('bash', ['-c', `exec 3<>/dev/tcp/${a.ip4}/8080`], { timeoutMs: 5000 });
  assert.equal(r.code, 0, r.stderr);
  const got = await inbound.next();
  assert.deepEqual(got.dst, { address: a.ip4, port: 8080, family: 4 });
  assert.equal(got.peer, b.ip4);
  const r2 = await b.exec('bash', ['-c', `exec 3<>/dev/tcp/${a.ip4}/${PORTS.hbone}`], { timeoutMs: 5000 });
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(await hbone.promise, PORTS.hbone);
  inbound.server.close();
  hboneServer.close();
});

test('removing the rules ends the capture', { skip: needsRoot }, async () => {
  const [a, b] = pods();
  removeInpodRules(a.netns);
  assert.doesNotMatch(a.run('iptables-save'), /ISTIO_/);
  const reached = Promise.withResolvers<string>();
  const server = await listenTcp({ address: b.ip4, port: 8081, netns: b.netnsPath }, (s) => { reached.resolve(s.remoteAddress ?? ''); s.end(); });
  const r = await a.exec('bash', ['-c', `exec 3<>/dev/tcp/${b.ip4}/8081`], { timeoutMs: 5000 });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await reached.promise, a.ip4);
  server.close();
  installInpodRules(a.netns);
});
