// SPDX-License-Identifier: Apache-2.0
// Each missing capability turns the kernel fast paths off and is named; the
// real kernel here has them all.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bpffsMounted, root, skipUnless } from '../../../test/skips.ts';
import { cgroup2Mount, decideFastpaths, readKernelFacts, type KernelFacts } from './probe.ts';

const all: KernelFacts = {
  root: true, objectPath: '/x/skein.bpf.o', objectBuilt: true, bpffsMounted: true, cgroup2: true, progSockAddr: true, progSockOps: true,
  mapRingbuf: true, helperNetnsCookie: true, helperSetsockopt: true, helperSocketCookie: true, progSkLookup: true, progIterTcp: true, mapSockhash: true,
};

test('with every capability every fast path is on; SKEIN_SAME_NODE=hbone keeps same-node traffic on mTLS', () => {
  const s = decideFastpaths('auto', all);
  assert.equal(s['connect-lb'].active, true);
  assert.equal(s['kernel-telemetry'].active, true);
  assert.equal(s['same-node'].active, true);
  const hbone = decideFastpaths('auto', all, 'hbone');
  assert.equal(hbone['connect-lb'].active, true);
  assert.deepEqual(hbone['same-node'], { active: false, reason: 'SKEIN_SAME_NODE=hbone: same-node traffic keeps mTLS over HBONE' });
});

test('without sk_lookup, socket iterators or sockhash only the same-node path is off, and says why', () => {
  for (const [fact, why] of [['progSkLookup', /sk_lookup/], ['progIterTcp', /iterators/], ['mapSockhash', /sockhash/]] as const) {
    const s = decideFastpaths('auto', { ...all, [fact]: false });
    assert.equal(s['connect-lb'].active, true, fact);
    assert.equal(s['same-node'].active, false, fact);
    assert.match(s['same-node'].reason, why, fact);
  }
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

test('a failed bpffs mount is named in the reason', () => {
  const s = decideFastpaths('auto', { ...all, bpffsMounted: false, bpffsWhy: 'mounting one at /sys/fs/bpf failed: EPERM' });
  assert.match(s['connect-lb'].reason, /a bpf filesystem to pin into \(mounting one at \/sys\/fs\/bpf failed: EPERM\)/);
});

test('this machine\'s kernel: the probes find what the fast path needs', { skip: skipUnless(root('to probe eBPF'), bpffsMounted()) }, () => {
  const cg = cgroup2Mount();
  assert.ok(cg !== undefined, 'a cgroup2 mount');
  const f = readKernelFacts({ objectPath: '/nonexistent.o', bpffsDir: '/sys/fs/bpf/skein/x', cgroupPath: cg });
  assert.deepEqual({ ...f, objectBuilt: true }, { ...all, objectPath: '/nonexistent.o' });
});
