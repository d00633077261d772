// SPDX-License-Identifier: Apache-2.0
// The fd-based libbpf wrapper against the real kernel: a small object built
// from fixtures/probe.bpf.c is loaded, its maps driven from TypeScript, its
// cgroup/connect4 program attached to a throwaway cgroup through a link, and
// the records it writes read from a ring buffer on Node's loop.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import {
  attachCgroup,
  BpfMap,
  constants as c,
  getPinned,
  linkInfo,
  mapInfo,
  native,
  openBpfObject,
  pin,
  probeHelper,
  probeMapType,
  probeProgType,
  progInfo,
  RingBuffer,
  type BpfObject,
} from '../lib/index.ts';
import { bpffsMounted, cgroup2, root, skipUnless } from '../../test/skips.ts';
import { isRoot, openFdCount } from './netns-fixture.ts';

const skip = skipUnless(root('loading BPF programs'));

/**
 * Where cgroup v2 is mounted: /sys/fs/cgroup on a unified host, elsewhere
 * (/sys/fs/cgroup/unified) on a hybrid one, where /sys/fs/cgroup is a tmpfs
 * and a directory made there is no cgroup at all.
 */
function cgroup2Root(): string | undefined {
  const mounts = fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' '));
  const roots = mounts.filter((f) => f[2] === 'cgroup2').map((f) => f[1] ?? '');
  return roots.includes('/sys/fs/cgroup') ? '/sys/fs/cgroup' : roots[0];
}
const cgroupRoot = isRoot ? cgroup2Root() : undefined;
// Pins need bpffs on /sys/fs/bpf: mounted here when root finds none, else a failure.
const skipPins = skipUnless(root('loading BPF programs, bpffs'), bpffsMounted());
const skipCgroup = skipUnless(root('loading BPF programs, cgroups, bpffs'), cgroup2(), bpffsMounted());
const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');

let tmp = '';
let probeObj = '';
let brokenObj = '';

/** clang -O2 -g -target bpf; <asm/types.h> lives in the multiarch include dir. */
function compile(source: string, out: string): void {
  let multiarch = `${os.machine()}-linux-gnu`;
  try {
    multiarch = execFileSync('gcc', ['-print-multiarch'], { encoding: 'utf8' }).trim() || multiarch;
  } catch { /* no gcc: keep the guess */ }
  execFileSync('clang', ['-O2', '-g', '-target', 'bpf', `-I/usr/include/${multiarch}`, '-c', source, '-o', out], { stdio: ['ignore', 'ignore', 'pipe'] });
}

before(() => {
  if (!isRoot) return;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'skein-ebpf-'));
  probeObj = path.join(tmp, 'probe.bpf.o');
  brokenObj = path.join(tmp, 'broken.bpf.o');
  compile(path.join(fixtures, 'probe.bpf.c'), probeObj);
  compile(path.join(fixtures, 'broken.bpf.c'), brokenObj);
});
after(() => { if (tmp !== '') fs.rmSync(tmp, { recursive: true, force: true }); });

/** Runs cleanups in reverse order, all of them, then throws the first failure. */
class Cleanup {
  readonly #steps: (() => void)[] = [];
  add(step: () => void): void { this.#steps.push(step); }
  run(): void {
    let first: unknown;
    for (const step of this.#steps.splice(0).reverse()) {
      try { step(); } catch (err) { first ??= err; }
    }
    if (first !== undefined) throw first as Error;
  }
}

function mapNamed(obj: BpfObject, name: string): ReturnType<BpfObject['maps']>[number] {
  const m = obj.maps().find((x) => x.name === name);
  assert.ok(m, `map ${name} in ${JSON.stringify(obj.maps())}`);
  return m;
}

const u32 = (n: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; };
const u64 = (n: number): Buffer => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(n)); return b; };

test('an object opens and loads, and programs() and maps() describe it', { skip }, () => {
  const fdsBefore = openFdCount();
  const obj = openBpfObject(probeObj);
  try {
    const progs = obj.programs();
    assert.equal(progs.length, 1);
    const p = progs[0];
    assert.ok(p);
    assert.equal(p.name, 'probe_connect4');
    assert.equal(p.section, 'cgroup/connect4');
    assert.equal(p.type, c.BPF_PROG_TYPE_CGROUP_SOCK_ADDR);
    assert.equal(p.expectedAttachType, c.BPF_CGROUP_INET4_CONNECT);
    assert.ok(p.fd > 2);
    const pi = progInfo(p.fd);
    assert.equal(pi.name, 'probe_connect4');
    assert.equal(pi.type, c.BPF_PROG_TYPE_CGROUP_SOCK_ADDR);
    assert.match(pi.tag, /^[0-9a-f]{16}$/);
    assert.ok(pi.id > 0);

    const hash = mapNamed(obj, 'probe_hash');
    assert.deepEqual({ ...hash, fd: 0 }, { name: 'probe_hash', fd: 0, type: c.BPF_MAP_TYPE_HASH, keySize: 4, valueSize: 8, maxEntries: 64 });
    const events = mapNamed(obj, 'probe_events');
    assert.equal(events.type, c.BPF_MAP_TYPE_RINGBUF);
    assert.equal(events.maxEntries, 4096);
    const mi = mapInfo(hash.fd);
    assert.deepEqual({ ...mi, id: 0 }, { id: 0, name: 'probe_hash', type: c.BPF_MAP_TYPE_HASH, keySize: 4, valueSize: 8, maxEntries: 64 });

    // Info of the wrong kind is refused, not misread.
    assert.throws(() => mapInfo(p.fd), { code: 'EINVAL', message: /is not a BPF map \(anon_inode:bpf-prog\)/ });
    assert.throws(() => progInfo(hash.fd), { code: 'EINVAL', message: /is not a BPF program/ });
    assert.throws(() => linkInfo(hash.fd), { code: 'EINVAL', message: /is not a BPF link/ });
  } finally {
    obj.close();
  }
  obj.close(); // idempotent
  assert.throws(() => obj.programs(), { code: 'ERR_BPF_OBJECT_CLOSED' });
  assert.equal(openFdCount(), fdsBefore, 'close() released every fd');
});

test('map update, lookup, delete and next-key round-trip; absent keys are null/false; sizes are checked', { skip }, () => {
  const obj = openBpfObject(probeObj);
  try {
    const hash = mapNamed(obj, 'probe_hash');
    const m = BpfMap.fromObject(hash);
    assert.equal(m.lookup(u32(1)), null);
    assert.equal(m.delete(u32(1)), false);
    assert.equal(native.mapNextKey(m.fd, null, 4), null, 'an empty map has no first key');

    m.update(u32(1), u64(100));
    m.update(u32(2), u64(200), c.BPF_NOEXIST);
    assert.deepEqual(m.lookup(u32(1)), u64(100));
    assert.throws(() => { m.update(u32(1), u64(1), c.BPF_NOEXIST); }, { code: 'EEXIST', syscall: 'bpf_map_update_elem' });
    assert.throws(() => { m.update(u32(3), u64(3), c.BPF_EXIST); }, { code: 'ENOENT' });
    m.update(u32(1), u64(101), c.BPF_EXIST);
    assert.deepEqual(native.mapLookup(m.fd, u32(1), 8), u64(101));

    const keys = [...m.keys()].map((k) => k.readUInt32LE(0)).sort();
    assert.deepEqual(keys, [1, 2]);
    assert.equal([...m.keys(1)].length, 1, 'keys() stops at its bound');
    const first = native.mapNextKey(m.fd, null, 4);
    assert.ok(first);
    const second = native.mapNextKey(m.fd, first, 4);
    assert.ok(second);
    assert.equal(native.mapNextKey(m.fd, second, 4), null);

    assert.equal(m.delete(u32(1)), true);
    assert.equal(m.delete(u32(1)), false);
    assert.equal(m.lookup(u32(1)), null);

    // Buffers of the wrong size never reach the kernel.
    assert.throws(() => native.mapLookup(m.fd, Buffer.alloc(3), 8), { code: 'EINVAL', syscall: 'bpf_map_lookup_elem', message: /key is 3 bytes but map 'probe_hash' .* needs 4/ });
    assert.throws(() => native.mapLookup(m.fd, u32(2), 4), { code: 'EINVAL', message: /value is 4 bytes .* needs 8/ });
    assert.throws(() => { native.mapUpdate(m.fd, u32(2), Buffer.alloc(16), 0); }, { code: 'EINVAL', message: /value is 16 bytes/ });
    assert.throws(() => native.mapDelete(m.fd, Buffer.alloc(8)), { code: 'EINVAL', message: /key is 8 bytes/ });
    assert.throws(() => native.mapNextKey(m.fd, null, 2), { code: 'EINVAL', message: /keySize is 2 bytes/ });
    const prog = obj.programs()[0];
    assert.ok(prog);
    assert.throws(() => native.mapLookup(prog.fd, Buffer.alloc(3), 8), { code: 'EINVAL' });

    // A full hash map refuses a new key with E2BIG.
    for (let i = 0; i < 63; i++) m.update(u32(1000 + i), u64(i)); // with key 2: 64
    assert.throws(() => { m.update(u32(5000), u64(0)); }, { code: 'E2BIG', syscall: 'bpf_map_update_elem' });
    assert.equal([...m.keys()].length, 64);
  } finally {
    obj.close();
  }
});

test('a pinned map comes back by path as the same map; absent pins are ENOENT', { skip: skipPins }, () => {
  const dir = `/sys/fs/bpf/skein-test-${process.pid}`;
  const cleanup = new Cleanup();
  try {
    fs.mkdirSync(dir);
    cleanup.add(() => { fs.rmSync(dir, { recursive: true, force: true }); });
    const obj = openBpfObject(probeObj);
    cleanup.add(() => { obj.close(); });
    const hash = mapNamed(obj, 'probe_hash');
    pin(hash.fd, `${dir}/hash`);
    assert.throws(() => { pin(hash.fd, `${dir}/hash`); }, { code: 'EEXIST', syscall: 'bpf_obj_pin' });
    const fd = getPinned(`${dir}/hash`);
    cleanup.add(() => { native.closeFd(fd); });
    assert.notEqual(fd, hash.fd);
    assert.equal(mapInfo(fd).id, mapInfo(hash.fd).id);
    // One map, two fds: a write through one is seen through the other.
    native.mapUpdate(hash.fd, u32(7), u64(77), c.BPF_ANY);
    assert.deepEqual(native.mapLookup(fd, u32(7), 8), u64(77));
    const dup = native.dupFd(fd);
    assert.equal(mapInfo(dup).id, mapInfo(fd).id);
    native.closeFd(dup);
    assert.throws(() => getPinned(`${dir}/absent`), { code: 'ENOENT', syscall: 'bpf_obj_get', message: /absent/ });
  } finally {
    cleanup.run();
  }
  assert.equal(fs.existsSync(dir), false);
});

/** Runs a short-lived process inside `cgroup` that connects to 127.0.0.1:9 (refused). */
async function connectFromCgroup(cgroup: string): Promise<void> {
  const child = spawn('sh', ['-c', `echo $$ > ${cgroup}/cgroup.procs && exec bash -c 'exec 3<>/dev/tcp/127.0.0.1/9' 2>/dev/null`], { stdio: 'ignore' });
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', () => { resolve(); });
  });
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => { timer = setTimeout(() => { reject(new Error(`timed out waiting for ${what}`)); }, ms); });
  return Promise.race([p, t]).finally(() => { clearTimeout(timer); });
}

function removeCgroup(dir: string): void {
  // The child has been reaped; the kernel may still take a moment to let go.
  for (let i = 0; ; i++) {
    try {
      fs.rmdirSync(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || i >= 50) throw err;
      execFileSync('sleep', ['0.05']);
    }
  }
}

test('cgroup/connect4 through a link reports connects on a ring buffer, and a pinned link outlives every fd', { skip: skipCgroup }, async () => {
  const fdsBefore = openFdCount();
  const cgroup = `${cgroupRoot ?? '/sys/fs/cgroup'}/skein-test-${process.pid}`;
  const pins = `/sys/fs/bpf/skein-test-${process.pid}-link`;
  const cleanup = new Cleanup();
  try {
    fs.mkdirSync(cgroup);
    cleanup.add(() => { removeCgroup(cgroup); });
    fs.mkdirSync(pins);
    cleanup.add(() => { fs.rmSync(pins, { recursive: true, force: true }); });

    let obj: BpfObject | undefined = openBpfObject(probeObj);
    cleanup.add(() => { obj?.close(); });
    const prog = obj.programs()[0];
    assert.ok(prog);
    const progId = progInfo(prog.fd).id;
    const events = mapNamed(obj, 'probe_events');

    let linkFd = attachCgroup(prog.fd, cgroup, c.BPF_CGROUP_INET4_CONNECT);
    cleanup.add(() => { if (linkFd >= 0) native.closeFd(linkFd); });
    const li = linkInfo(linkFd);
    assert.equal(li.progId, progId);
    assert.ok(li.id > 0);

    // The ring buffer keeps working when the fd it was made from is closed.
    const records: Buffer[] = [];
    let arrived: () => void = () => undefined;
    const ringFd = native.dupFd(events.fd);
    const rb = new RingBuffer(ringFd, (data) => { records.push(data); arrived(); });
    native.closeFd(ringFd);
    cleanup.add(() => { rb.close(); });
    rb.start();

    const first = new Promise<void>((r) => { arrived = r; });
    await connectFromCgroup(cgroup);
    await withTimeout(first, 5000, 'a ring-buffer record');
    assert.equal(records.length, 1, 'one connect to port 9, one record');
    const rec = records[0];
    assert.ok(rec);
    assert.equal(rec.length, 16);
    assert.equal(rec.readUInt32LE(8), 9, 'the destination port');
    const probe = native.createSocket(4, 'stream', -1);
    const ourCookie = native.netnsCookie(probe);
    native.closeFd(probe);
    assert.equal(rec.readBigUInt64LE(0), ourCookie, "the child's netns cookie is ours");
    assert.equal(rb.consume(), 0, 'nothing left in the ring');

    // Pin the link and the ring, then close every fd we have.
    pin(linkFd, `${pins}/link`);
    pin(events.fd, `${pins}/events`);
    native.closeFd(linkFd);
    linkFd = -1;
    rb.close();
    rb.close(); // idempotent
    assert.throws(() => rb.consume(), /closed/);
    obj.close();
    obj = undefined;

    // The attachment persists: the pinned link still names the program, and
    // the program still runs and writes to the (pinned) ring.
    const link2 = getPinned(`${pins}/link`);
    cleanup.add(() => { native.closeFd(link2); });
    assert.deepEqual(linkInfo(link2), li);
    const ring2 = getPinned(`${pins}/events`);
    cleanup.add(() => { native.closeFd(ring2); });
    const again: Buffer[] = [];
    let arrived2: () => void = () => undefined;
    const second = new Promise<void>((r) => { arrived2 = r; });
    const rb2 = new RingBuffer(ring2, (data) => { again.push(data); arrived2(); });
    cleanup.add(() => { rb2.close(); });
    rb2.start();
    await connectFromCgroup(cgroup);
    await withTimeout(second, 5000, 'a record after every original fd was closed');
    assert.equal(again[0]?.readUInt32LE(8), 9);

    // Detached, the program no longer runs for the cgroup.
    native.bpfLinkDetach(link2);
    rb2.stop();
    await connectFromCgroup(cgroup);
    assert.equal(rb2.consume(), 0, 'no record after detach');
    assert.equal(again.length, 1);
  } finally {
    cleanup.run();
  }
  assert.equal(fs.existsSync(cgroup), false);
  assert.equal(fs.existsSync(pins), false);
  assert.equal(openFdCount(), fdsBefore, 'no fd leaked');
});

test('a RingBuffer needs a ring-buffer map', { skip }, () => {
  const obj = openBpfObject(probeObj);
  try {
    const hash = mapNamed(obj, 'probe_hash');
    assert.throws(() => new RingBuffer(hash.fd, () => undefined), { code: 'EINVAL', syscall: 'ring_buffer__new' });
  } finally {
    obj.close();
  }
});

test('probes find what Skein needs on this kernel', { skip }, () => {
  assert.equal(probeProgType(c.BPF_PROG_TYPE_CGROUP_SOCK_ADDR), true);
  assert.equal(probeProgType(c.BPF_PROG_TYPE_SOCK_OPS), true);
  assert.equal(probeProgType(c.BPF_PROG_TYPE_SK_MSG), true);
  assert.equal(probeMapType(c.BPF_MAP_TYPE_RINGBUF), true);
  assert.equal(probeMapType(c.BPF_MAP_TYPE_SOCKHASH), true);
  assert.equal(probeHelper(c.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, c.BPF_FUNC_get_netns_cookie), true);
  assert.equal(probeHelper(c.BPF_PROG_TYPE_SK_MSG, c.BPF_FUNC_msg_redirect_hash), true);
  // Helpers a program type may not call (libbpf 1.1 alone says yes to these).
  assert.equal(probeHelper(c.BPF_PROG_TYPE_SOCKET_FILTER, c.BPF_FUNC_msg_redirect_hash), false);
  assert.equal(probeHelper(c.BPF_PROG_TYPE_CGROUP_SOCK_ADDR, c.BPF_FUNC_msg_redirect_hash), false);
  assert.equal(probeHelper(c.BPF_PROG_TYPE_SK_MSG, c.BPF_FUNC_get_netns_cookie), true);
  assert.ok(native.possibleCpus() >= 1);
});

test('a program the verifier refuses gives an error carrying the verifier log', { skip }, () => {
  const fdsBefore = openFdCount();
  assert.throws(() => openBpfObject(brokenObj), (e: Error & { code?: string; syscall?: string }) => {
    assert.equal(e.code, 'EACCES');
    assert.equal(e.syscall, 'bpf_object__load');
    assert.match(e.message, /broken\.bpf\.o/);
    assert.match(e.message, /invalid mem access 'map_value_or_null'/);
    assert.match(e.message, /failed to load/);
    return true;
  });
  assert.throws(() => openBpfObject(path.join(tmp, 'absent.o')), { code: 'ENOENT', syscall: 'bpf_object__open_file' });
  assert.equal(openFdCount(), fdsBefore, 'a failed load leaks no fd');
});

test('bad arguments throw a usage TypeError', () => {
  const loose = native as unknown as Record<string, (...args: unknown[]) => unknown>;
  const cases: [string, unknown[]][] = [
    ['bpfObjectOpen', [1]],
    ['bpfObjPin', ['x', '/sys/fs/bpf/x']],
    ['bpfObjGet', [undefined]],
    ['closeFd', [-1]],
    ['dupFd', ['3']],
    ['openPath', ['/', 'yes']],
    ['bpfLinkCreate', [1, 2]],
    ['bpfLinkCreate', [1, 2, -1]],
    ['bpfLinkDetach', [null]],
    ['bpfProgAttach', [1, 2, 3]],
    ['bpfProgDetach2', [1, 2, 'x']],
    ['mapUpdate', [3, 'key', Buffer.alloc(8), 0]],
    ['mapUpdate', [3, Buffer.alloc(4), Buffer.alloc(8), -1]],
    ['mapLookup', [3, Buffer.alloc(4)]],
    ['mapLookup', [3, Buffer.alloc(4), 0]],
    ['mapDelete', [3, [1, 2, 3, 4]]],
    ['mapNextKey', [3, 'k', 4]],
    ['mapNextKey', [3, null]],
    ['mapInfo', [1.5]],
    ['progInfo', []],
    ['linkInfo', ['fd']],
    ['probeProgType', [-3]],
    ['probeHelper', [1]],
    ['probeMapType', ['ringbuf']],
  ];
  for (const [fn, args] of cases) {
    assert.throws(() => loose[fn]?.(...args), (e: Error & { code?: string }) => {
      assert.ok(e instanceof TypeError, `${fn}: ${e.message}`);
      assert.match(e.message, /^Usage: /);
      assert.equal(e.code, 'ERR_INVALID_ARG_TYPE');
      return true;
    }, `${fn}(${JSON.stringify(args)})`);
  }
  const Rb = native.RingBuffer as unknown as new (...args: unknown[]) => unknown;
  assert.throws(() => new Rb(3), /^TypeError: Usage: new RingBuffer/);
  assert.throws(() => new Rb('3', () => undefined), /^TypeError: Usage: new RingBuffer/);
});

test('RingBuffer.consume() rethrows what onRecord threw, keeps the rest, and close() from onRecord stops delivery', { skip: skipCgroup }, async () => {
  const cgroup = `${cgroupRoot ?? '/sys/fs/cgroup'}/skein-test-${process.pid}-rb`;
  const cleanup = new Cleanup();
  try {
    fs.mkdirSync(cgroup);
    cleanup.add(() => { removeCgroup(cgroup); });
    const obj = openBpfObject(probeObj);
    cleanup.add(() => { obj.close(); });
    const prog = obj.programs()[0];
    assert.ok(prog);
    const link = attachCgroup(prog.fd, cgroup, c.BPF_CGROUP_INET4_CONNECT);
    cleanup.add(() => { native.closeFd(link); });
    for (let i = 0; i < 4; i++) await connectFromCgroup(cgroup);

    let seen = 0;
    let mode: 'throw' | 'close' = 'throw';
    const rb = new RingBuffer(mapNamed(obj, 'probe_events').fd, () => {
      seen++;
      if (mode === 'throw') throw new Error('boom');
      rb.close();
    });
    cleanup.add(() => { rb.close(); });
    assert.throws(() => rb.consume(), /boom/);
    assert.equal(seen, 1, 'delivery stops at the record that threw');
    mode = 'close';
    assert.equal(rb.consume(), 1, 'close() inside onRecord ends this consume');
    assert.equal(seen, 2);
    assert.throws(() => rb.consume(), /closed/);
  } finally {
    cleanup.run();
  }
});
