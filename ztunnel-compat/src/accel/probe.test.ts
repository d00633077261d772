// SPDX-License-Identifier: Apache-2.0
// Each missing capability turns the kernel fast paths off and is named; the
// real kernel here has them all.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cgroup2Mount, decideFastpaths, readKernelFacts, type KernelFacts } from './probe.ts';

const all: KernelFacts = {
  root: true, objectPath: '/x/skein.bpf.o', objectBuilt: true, bpffsMounted: true, cgroup2: true, progSockAddr: true, progSockOps: true,
  mapRingbuf: true, helperNetnsCookie: true, helperSetsockopt: true, helperSocketCookie: true,
};

test('with every capability the connect-time path and its telemetry are on; same-node is not built yet', () => {
  const s = decideFastpaths('auto', all);
  assert.equal(s['connect-lb'].active, true);
  assert.equal(s['kernel-telemetry'].active, true);
  assert.deepEqual(s['same-node'].active, false);
  assert.match(s['same-node'].reason, /not built yet/);
});

test('SKEIN_KERNEL_FASTPATH=off turns everything off, saying so', () => {
  for (const s of Object.values(decideFastpaths('off', all))) assert.deepEqual(s, { active: false, reason: 'SKEIN_KERNEL_FASTPATH=off' });
});

test('each missing capability is named, and steering never runs without its telemetry', () => {
  const cases: [keyof KernelFacts, RegExp][] = [
    ['root', /privileges/], ['objectBuilt', /\/x\/skein\.bpf\.o/], ['bpffsMounted', /bpf filesystem/], ['cgroup2', /cgroup v2/],
    ['progSockAddr', /connect4 programs/], ['helperNetnsCookie', /bpf_get_netns_cookie/], ['helperSetsockopt', /bpf_setsockopt/],
    ['helperSocketCookie', /bpf_get_socket_cookie/], ['progSockOps', /sock_ops/], ['mapRingbuf', /ring buffer/],
  ];
  for (const [fact, why] of cases) {
    const s = decideFastpaths('auto', { ...all, [fact]: false });
    assert.equal(s['connect-lb'].active, false, fact);
    assert.equal(s['kernel-telemetry'].active, false, fact);
    assert.match(s['connect-lb'].reason, why, fact);
  }
});

test('this machine\'s kernel: the probes find what the fast path needs', { skip: process.getuid?.() === 0 ? false : 'needs root to probe eBPF' }, () => {
  const cg = cgroup2Mount();
  assert.ok(cg !== undefined, 'a cgroup2 mount');
  const f = readKernelFacts({ objectPath: '/nonexistent.o', bpffsDir: '/sys/fs/bpf/skein/x', cgroupPath: cg });
  assert.deepEqual({ ...f, objectBuilt: true }, { ...all, objectPath: '/nonexistent.o' });
});
