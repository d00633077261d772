// SPDX-License-Identifier: Apache-2.0
// The lab against the real kernel: pods reach each other across nodes with no
// mesh (IPv4 and IPv6), nothing routes out, processes run in their pod's
// netns and cgroup, and teardown (also of a crashed run) leaves nothing.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { listenTcp } from '@skein/bpf';
import { needsRoot as rootOnly } from '../skips.ts';
import { findLeftovers, Lab, LabSpecError, type ExecResult } from './index.ts';
import { listNetns } from './sh.ts';

const needsRoot = rootOnly('network namespaces, cgroups');
let lab: Lab | undefined;
const theLab = (): Lab => {
  if (lab === undefined) throw new Error('lab not built');
  return lab;
};

before(() => { if (!needsRoot) lab = Lab.create({ nodes: 2, podsPerNode: 2 }); });
after(() => { lab?.teardown(); });

async function serveOnce(netnsPath: string, address: string, reply: string): Promise<{ server: net.Server; peer: Promise<string> }> {
  const peer = Promise.withResolvers<string>();
  const server = await listenTcp({ address, port: 8080, netns: netnsPath }, (s) => {
    peer.resolve(s.remoteAddress ?? '');
    s.end(reply);
  });
  return { server, peer: peer.promise };
}

test('pods reach pods on the other node with no mesh, IPv4 and IPv6, from their own address', { skip: needsRoot }, async () => {
  const a = theLab().nodes[0]?.pods[0];
  const b = theLab().nodes[1]?.pods[1];
  assert.ok(a && b);
  for (const [dst, src] of [[b.ip4, a.ip4], [b.ip6, a.ip6]] as const) {
    const { server, peer } = await serveOnce(b.netnsPath, dst, `hello from ${b.name}`);
    const host = dst.includes(':') ? `[${dst}]` : dst;
    const r: ExecResult = await a.exec('curl', ['-sS', '--max-time', '5', '--http0.9', `telnet://${host}:8080`], { timeoutMs: 10_000 });
    assert.equal(r.stdout, `hello from ${b.name}`, r.stderr);
    assert.equal(await peer, src, 'the server sees the client pod address, not the node');
    server.close();
  }
});

test('same-node pods reach each other through their node', { skip: needsRoot }, async () => {
  const [a, b] = theLab().nodes[0]?.pods ?? [];
  assert.ok(a && b);
  const { server, peer } = await serveOnce(b.netnsPath, b.ip4, 'same-node');
  const r = await a.exec('bash', ['-c', `exec 3<>/dev/tcp/${b.ip4}/8080; cat <&3`]);
  assert.equal(r.stdout, 'same-node');
  assert.equal(await peer, a.ip4);
  server.close();
});

test('nothing routes out of the lab', { skip: needsRoot }, async () => {
  const pod = theLab().pods[0];
  const node = theLab().nodes[0];
  assert.ok(pod && node);
  // TEST-NET-3 address: no route exists, so connect fails before any packet.
  for (const host of [pod, node]) {
    const r = await host.exec('bash', ['-c', 'exec 3<>/dev/tcp/203.0.113.1/80'], { timeoutMs: 5000 });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Network is unreachable/);
    assert.doesNotMatch(host.run('ip', 'route'), /^default/m);
  }
});

test('a process runs in its pod netns and cgroup and is killed at teardown', { skip: needsRoot }, async () => {
  const pod = theLab().pods[1];
  assert.ok(pod);
  const r = await pod.exec('sh', ['-c', 'cat /proc/self/cgroup; ip -o -4 addr show dev eth0']);
  assert.match(r.stdout, new RegExp(`^0::/skein-lab/.*/${pod.netns}$`, 'm'));
  assert.match(r.stdout, new RegExp(`inet ${pod.ip4.replaceAll('.', '\\.')}/32`));
  const sleeper = pod.spawn('sleep', ['60']);
  await new Promise((res) => setTimeout(res, 100));
  assert.ok(sleeper.pid !== undefined && pod.pids().length > 0, 'sleep is in the pod cgroup');
});

test("a shell in a pod runs none of the user's start-up files", { skip: needsRoot }, async () => {
  const pod = theLab().pods[0];
  assert.ok(pod);
  // What made every `bash -c` in a pod slow under CI: a heavy ~/.bashrc, read
  // because stdin is a socket and SHLVL is low; BASH_ENV is read always.
  const home = fs.mkdtempSync('/tmp/skein-lab-home-');
  try {
    fs.writeFileSync(`${home}/.bashrc`, 'echo from-bashrc\n');
    fs.writeFileSync(`${home}/env.sh`, 'echo from-bash-env\n');
    const r = await pod.exec('bash', ['-c', 'echo ran'], { env: { ...process.env, HOME: home, SHLVL: '0', BASH_ENV: `${home}/env.sh` } });
    assert.equal(r.stdout, 'ran\n');
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
});

test('the lab refuses a bad declaration before touching the system', { skip: needsRoot }, () => {
  const before = listNetns().length;
  assert.throws(() => Lab.create({ nodes: [{ pods: [{ name: 'a', ip4: '10.244.0.10' }, { name: 'b', ip4: '10.244.0.10' }] }] }), LabSpecError);
  assert.equal(listNetns().length, before);
});

test('building and tearing down a 2x2 lab takes a few seconds and leaves nothing', { skip: needsRoot }, () => {
  const t0 = performance.now();
  const l = Lab.create({ nodes: 2, podsPerNode: 2 });
  const names = l.netnsNames;
  const dir = l.dir;
  const cg = l.cgroupDir;
  assert.ok(names.every((n) => listNetns().includes(n)));
  l.pods[0]?.spawn('sleep', ['60']);
  l.teardown();
  const ms = performance.now() - t0;
  assert.ok(ms < 5000, `2x2 build + teardown took ${ms.toFixed(0)} ms`);
  const left = listNetns();
  assert.deepEqual(names.filter((n) => left.includes(n)), []);
  assert.equal(fs.existsSync(dir), false);
  assert.equal(fs.existsSync(cg), false);
});

test('a crashed run is cleaned up by the next one', { skip: needsRoot }, async () => {
  // A child builds a lab, reports its names and is killed with SIGKILL, so no
  // teardown of its own runs.
  const script = `import { Lab } from ${JSON.stringify(new URL('./index.ts', import.meta.url).href)};
    const l = Lab.create({ nodes: 1, podsPerNode: 1 });
    l.pods[0].spawn('sleep', ['60']);
    process.stdout.write(JSON.stringify({ names: l.netnsNames, cg: l.cgroupDir, dir: l.dir }) + '\\n');
    setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    child.stdout.once('data', (d: Buffer) => { resolve(d.toString()); });
    child.once('exit', (code) => { reject(new Error(`child exited ${code}`)); });
  });
  const crashed = JSON.parse(line) as { names: string[]; cg: string; dir: string };
  const exited = new Promise((r) => child.once('exit', r));
  if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
  await exited;
  assert.ok(crashed.names.every((n) => listNetns().includes(n)), 'the crash left namespaces behind');

  const next = Lab.create({ nodes: 1, podsPerNode: 1 });
  next.teardown();
  const left = listNetns();
  assert.deepEqual(crashed.names.filter((n) => left.includes(n)), []);
  assert.equal(fs.existsSync(crashed.cg), false, 'its cgroup (and the sleep in it) is gone');
  assert.equal(fs.existsSync(crashed.dir), false);
  assert.deepEqual(findLeftovers().netns, [], 'no namespace of a dead run is left');
});
