// SPDX-License-Identifier: Apache-2.0
// setNetnsSysctl, and what Skein uses it for: net.ipv4.tcp_migrate_req=1 in
// a pod's namespace hands the connections queued on a closing SO_REUSEPORT
// listener to another listener of its group instead of resetting them (the
// old node proxy closing its capture listeners while the new one holds
// them too). raiseNofileLimit and mallocTrim, the process helpers.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import type net from 'node:net';
import { test } from 'node:test';
import { connectTcp, constants as c, listenTcp, mallocTrim, native, openNetns, setNetnsSysctl } from '../lib/index.ts';
import { needsRoot, suiteNetns } from './netns-fixture.ts';

const netns = suiteNetns();
const PORT = 7411;

/** Connects `n` clients, closes a never-accepting listener of the group, and counts the clients that still get an echo. */
async function survivors(nsPath: string, n: number): Promise<number> {
  const nsfd = openNetns(nsPath);
  const fdA = native.createSocket(4, 'stream', nsfd);
  fs.closeSync(nsfd);
  native.setIntOpt(fdA, c.SOL_SOCKET, c.SO_REUSEPORT, 1);
  native.bind(fdA, '127.0.0.1', PORT);
  native.listen(fdA, 128);
  const b = await listenTcp({ address: '127.0.0.1', port: PORT, netns: nsPath, reusePort: true }, (s) => { s.on('error', () => undefined); s.pipe(s); });
  try {
    const clients: net.Socket[] = await Promise.all(Array.from({ length: n }, () => new Promise<net.Socket>((resolve, reject) => {
      const s = connectTcp({ address: '127.0.0.1', port: PORT, netns: nsPath });
      s.once('connect', () => { resolve(s); });
      s.once('error', reject);
    })));
    fs.closeSync(fdA); // A never accepted: its queue goes with it (or migrates)
    const ok = await Promise.all(clients.map((s) => new Promise<boolean>((resolve) => {
      const t = setTimeout(() => { s.destroy(); resolve(false); }, 2000);
      s.once('error', () => { clearTimeout(t); resolve(false); });
      s.once('data', () => { clearTimeout(t); s.destroy(); resolve(true); });
      s.write('x');
    })));
    return ok.filter(Boolean).length;
  } finally {
    b.close();
  }
}

test('tcp_migrate_req set in one namespace only; queued connections of a closed SO_REUSEPORT listener then move to its peer', { skip: needsRoot, timeout: 30_000 }, async () => {
  const ns = netns();
  const read = (): string => ns.run('cat', '/proc/sys/net/ipv4/tcp_migrate_req').trim();
  const rootBefore = fs.readFileSync('/proc/sys/net/ipv4/tcp_migrate_req', 'utf8');
  assert.equal(read(), '0');
  // Without it, clients queued on the closed listener are reset (the test can fail).
  const n = 24;
  assert.ok(await survivors(ns.path, n) < n, 'some clients were queued on the closed listener and reset');
  setNetnsSysctl(ns.path, 'net/ipv4/tcp_migrate_req', '1');
  assert.equal(read(), '1');
  assert.equal(fs.readFileSync('/proc/sys/net/ipv4/tcp_migrate_req', 'utf8'), rootBefore, 'the root namespace is untouched');
  assert.equal(await survivors(ns.path, n), n);
});

test('setNetnsSysctl refuses names outside net/ and bad input', { skip: needsRoot }, () => {
  const ns = netns();
  for (const name of ['kernel/hostname', 'net/../kernel/hostname', 'net/ipv4/Tcp', '']) {
    assert.throws(() => { setNetnsSysctl(ns.path, name, '1'); }, TypeError, name);
  }
  assert.throws(() => { setNetnsSysctl(ns.path, 'net/ipv4/no_such_sysctl', '1'); }, (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
});

// (Node raises the soft limit itself as it starts, so the child lowers its
// own afterwards; the daemon does not rely on that undocumented step.)
test('raiseNofileLimit lifts the soft open-files limit to the hard one', { timeout: 20_000 }, () => {
  const lib = new URL('../lib/index.ts', import.meta.url).pathname;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e',
    `import { execFileSync } from 'node:child_process'; execFileSync('prlimit', ['--pid=' + process.pid, '--nofile=512:4096']);
     const b = await import(${JSON.stringify(lib)}); const r = b.raiseNofileLimit(); const again = b.raiseNofileLimit(); console.log(JSON.stringify([r, again]));`], { encoding: 'utf8' });
  assert.deepEqual(JSON.parse(out), [{ before: 512, soft: 4096, hard: 4096 }, { before: 4096, soft: 4096, hard: 4096 }]);
});

test('mallocTrim answers a boolean', () => {
  assert.equal(typeof mallocTrim(), 'boolean');
});

// The soak's finding: after a burst, V8 keeps the heap's freed pages
// resident through ordinary collections; a memory-reducing one returns them.
test('memoryPressure gives a collected heap\'s pages back to the kernel', { timeout: 60_000 }, () => {
  const lib = new URL('../lib/index.ts', import.meta.url).pathname;
  const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', `
    const b = await import(${JSON.stringify(lib)});
    let keep = []; for (let i = 0; i < 1_500_000; i++) keep.push({ a: i, b: 'x' + i, c: [i] });
    keep = null; globalThis.gc(); globalThis.gc();
    const before = process.memoryUsage();
    b.memoryPressure();
    const after = process.memoryUsage();
    console.log(JSON.stringify({ rssBefore: before.rss, heapBefore: before.heapTotal, rssAfter: after.rss }));`], { encoding: 'utf8' });
  const r = JSON.parse(out) as { rssBefore: number; heapBefore: number; rssAfter: number };
  const mb = (n: number): number => Math.round(n / 2 ** 20);
  // Collected but still resident: RSS far above the heap (the test can fail)...
  assert.ok(r.rssBefore - r.heapBefore > 100 * 2 ** 20, `rss ${mb(r.rssBefore)} MB, heap ${mb(r.heapBefore)} MB`);
  // ...and given back.
  assert.ok(r.rssBefore - r.rssAfter > 100 * 2 ** 20, `rss ${mb(r.rssBefore)} -> ${mb(r.rssAfter)} MB`);
});
