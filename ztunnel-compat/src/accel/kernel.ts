// SPDX-License-Identifier: Apache-2.0
// The kernel side's lifetime: load the eBPF object and attach its programs to
// the pods' cgroup through links pinned in our bpffs directory — or adopt
// what a previous daemon pinned there, so steered connections keep working
// across restarts and upgrades — and write the maps. `cleanup` removes it
// all (`skein proxy --cleanup`).
import fs from 'node:fs';
import path from 'node:path';
import { constants, native } from '@skein/bpf';
import { checkBpffs } from './bpffs.ts';
import { decodeApproval, LAYOUT, MAPS, PROGRAMS, STAT, type Approval } from './layout.ts';

type MapName = keyof typeof MAPS;

interface MapRef {
  fd: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
}

const EXPECTED: Record<MapName, { keySize: number; valueSize: number }> = {
  pods: { keySize: 8, valueSize: LAYOUT.skein_pod.size },
  services: { keySize: LAYOUT.skein_svc_key.size, valueSize: LAYOUT.skein_service.size },
  local: { keySize: 4, valueSize: LAYOUT.skein_local.size },
  authz: { keySize: LAYOUT.skein_authz_key.size, valueSize: 4 },
  flows: { keySize: 8, valueSize: LAYOUT.skein_flow.size },
  approved: { keySize: LAYOUT.skein_flow_key.size, valueSize: LAYOUT.skein_approval.size },
  listeners: { keySize: LAYOUT.skein_listen_key.size, valueSize: 8 },
  events: { keySize: 0, valueSize: 0 },
  stats: { keySize: 4, valueSize: 8 },
  appPort: { keySize: 4, valueSize: 4 },
};

/** Which program attaches where (the target is the cgroup). */
const ATTACH: [keyof typeof PROGRAMS, () => number][] = [
  ['connect4', () => constants.BPF_CGROUP_INET4_CONNECT],
  ['sockops', () => constants.BPF_CGROUP_SOCK_OPS],
  ['sockRelease', () => constants.BPF_CGROUP_INET_SOCK_RELEASE],
  ['getpeername4', () => constants.BPF_CGROUP_INET4_GETPEERNAME],
  ['getsockname4', () => constants.BPF_CGROUP_INET4_GETSOCKNAME],
];

export class KernelError extends Error {
  override name = 'KernelError';
}

export interface ReconcileResult {
  written: number;
  removed: number;
  /** Entries the kernel refused (map full): those flows stay in userspace. */
  refused: number;
}

export interface Entry {
  key: Buffer;
  value: Buffer;
}

const mapsDir = (dir: string): string => path.join(dir, 'maps');
const linksDir = (dir: string): string => path.join(dir, 'links');
const progsDir = (dir: string): string => path.join(dir, 'progs');
/** sk_lookup links, one per enrolled pod's netns, named by its cookie. */
const netnsDir = (dir: string): string => path.join(dir, 'netns');

export class KernelState {
  readonly adopted: boolean;
  readonly #dir: string;
  readonly #maps: Record<MapName, MapRef>;
  readonly #links: number[];
  /** The sk_lookup program, attached to each enrolled pod's netns as it comes. */
  readonly #skLookup: number;
  /** The listener-learning iterator's link, run from inside each new pod's netns. */
  readonly #learn: number;
  /** Per map: what we last wrote, by hex key. */
  readonly #written = new Map<string, Map<string, Buffer>>();
  #closed = false;

  private constructor(dir: string, maps: Record<MapName, MapRef>, links: number[], skLookup: number, learn: number, adopted: boolean) {
    this.#dir = dir;
    this.#maps = maps;
    this.#links = links;
    this.#skLookup = skLookup;
    this.#learn = learn;
    this.adopted = adopted;
  }

  /** Adopts the pinned programs and maps when they are complete and of our layout; else loads afresh. */
  static open(o: { objectPath: string; bpffsDir: string; cgroupPath: string }): KernelState {
    // Adopt only programs of this very build (an upgrade brings new ones).
    const adopted = KernelState.#sameBuild(o.objectPath, o.bpffsDir) ? KernelState.#adopt(o.bpffsDir) : undefined;
    if (adopted !== undefined) return adopted;
    KernelState.cleanup(o.bpffsDir);
    return KernelState.#load(o);
  }

  /** Whether the pinned programs are the ones in `objectPath` (same tags: same instructions). */
  static #sameBuild(objectPath: string, dir: string): boolean {
    let obj;
    try {
      obj = native.bpfObjectOpen(objectPath);
    } catch {
      return false;
    }
    try {
      const tags = new Map(obj.programs().map((p) => [p.name, native.progInfo(p.fd).tag]));
      return Object.values(PROGRAMS).every((name) => {
        try {
          const fd = native.bpfObjGet(path.join(progsDir(dir), name));
          try { return native.progInfo(fd).tag === tags.get(name); } finally { native.closeFd(fd); }
        } catch {
          return false;
        }
      });
    } finally {
      obj.close();
    }
  }

  static #adopt(dir: string): KernelState | undefined {
    const fds: number[] = [];
    try {
      const maps = {} as Record<MapName, MapRef>;
      for (const [name, mapName] of Object.entries(MAPS) as [MapName, string][]) {
        const fd = native.bpfObjGet(path.join(mapsDir(dir), mapName));
        fds.push(fd);
        const info = native.mapInfo(fd);
        const want = EXPECTED[name];
        if (name !== 'events' && (info.keySize !== want.keySize || info.valueSize !== want.valueSize)) {
          closeAll(fds);
          return undefined;
        }
        maps[name] = { fd, keySize: info.keySize, valueSize: info.valueSize, maxEntries: info.maxEntries };
      }
      const links: number[] = [];
      for (const [prog] of ATTACH) {
        const fd = native.bpfObjGet(path.join(linksDir(dir), PROGRAMS[prog]));
        fds.push(fd);
        links.push(fd);
      }
      const skLookup = native.bpfObjGet(path.join(progsDir(dir), PROGRAMS.skLookup));
      fds.push(skLookup);
      const learn = native.bpfObjGet(path.join(linksDir(dir), PROGRAMS.learnListeners));
      fds.push(learn);
      return new KernelState(dir, maps, links, skLookup, learn, true);
    } catch {
      closeAll(fds);
      return undefined;
    }
  }

  static #load(o: { objectPath: string; bpffsDir: string; cgroupPath: string }): KernelState {
    const obj = native.bpfObjectOpen(o.objectPath);
    const fds: number[] = [];
    let cgroupFd = -1;
    try {
      // Never mkdir off bpffs: on a bare /sys/fs/bpf (sysfs) a recursive mkdir spins forever.
      const bpffs = checkBpffs(o.bpffsDir);
      if (!bpffs.ok) throw new KernelError(bpffs.reason);
      for (const d of [mapsDir, linksDir, progsDir, netnsDir]) fs.mkdirSync(d(o.bpffsDir), { recursive: true });
      const maps = {} as Record<MapName, MapRef>;
      const byName = new Map(obj.maps().map((m) => [m.name, m]));
      for (const [name, mapName] of Object.entries(MAPS) as [MapName, string][]) {
        const m = byName.get(mapName);
        if (m === undefined) throw new KernelError(`${o.objectPath} has no map ${mapName}`);
        native.bpfObjPin(m.fd, path.join(mapsDir(o.bpffsDir), mapName));
        const fd = native.dupFd(m.fd);
        fds.push(fd);
        maps[name] = { fd, keySize: m.keySize, valueSize: m.valueSize, maxEntries: m.maxEntries };
      }
      const progs = new Map(obj.programs().map((p) => [p.name, p]));
      // Every program pinned by name, so a later daemon can tell whether they are its own build.
      for (const name of Object.values(PROGRAMS)) {
        const p = progs.get(name);
        if (p === undefined) throw new KernelError(`${o.objectPath} has no program ${name}`);
        native.bpfObjPin(p.fd, path.join(progsDir(o.bpffsDir), name));
      }
      cgroupFd = native.openPath(o.cgroupPath, true);
      const links: number[] = [];
      for (const [prog, attachType] of ATTACH) {
        const p = progs.get(PROGRAMS[prog]);
        if (p === undefined) throw new KernelError(`${o.objectPath} has no program ${PROGRAMS[prog]}`);
        const link = native.bpfLinkCreate(p.fd, cgroupFd, attachType());
        fds.push(link);
        // Pinned, the link (and with it the attachment) outlives this process.
        native.bpfObjPin(link, path.join(linksDir(o.bpffsDir), PROGRAMS[prog]));
        links.push(link);
      }
      const skLookupProg = progs.get(PROGRAMS.skLookup);
      const learnProg = progs.get(PROGRAMS.learnListeners);
      if (skLookupProg === undefined || learnProg === undefined) {
        throw new KernelError(`${o.objectPath} lacks ${PROGRAMS.skLookup} or ${PROGRAMS.learnListeners}`);
      }
      const skLookup = native.dupFd(skLookupProg.fd);
      fds.push(skLookup);
      const learn = native.bpfLinkCreate(learnProg.fd, 0, constants.BPF_TRACE_ITER);
      fds.push(learn);
      native.bpfObjPin(learn, path.join(linksDir(o.bpffsDir), PROGRAMS.learnListeners));
      return new KernelState(o.bpffsDir, maps, links, skLookup, learn, false);
    } catch (err) {
      closeAll(fds);
      KernelState.cleanup(o.bpffsDir);
      throw err;
    } finally {
      if (cgroupFd >= 0) native.closeFd(cgroupFd);
      obj.close();
    }
  }

  /** Detaches our programs and removes every pin; what is gone already is fine. */
  static cleanup(dir: string): string[] {
    const removed: string[] = [];
    for (const sub of [netnsDir(dir), linksDir(dir), progsDir(dir), mapsDir(dir)]) {
      let names: string[] = [];
      try { names = fs.readdirSync(sub); } catch { continue; }
      for (const n of names) {
        const pin = path.join(sub, n);
        if (sub === linksDir(dir) || sub === netnsDir(dir)) {
          // Detach explicitly: another process may still hold the link open.
          try {
            const fd = native.bpfObjGet(pin);
            try { native.bpfLinkDetach(fd); } finally { native.closeFd(fd); }
          } catch { /* not a link any more */ }
        }
        fs.rmSync(pin, { force: true });
        removed.push(pin);
      }
      fs.rmSync(sub, { recursive: true, force: true });
    }
    fs.rmSync(dir, { recursive: true, force: true });
    return removed;
  }

  get eventsFd(): number {
    return this.#maps.events.fd;
  }

  /**
   * The sk_lookup program on exactly these pods' netns (by cookie → netns fd):
   * attached where missing, detached where the pod is gone. Pinned, so an
   * approved flow is admitted while the daemon restarts.
   */
  attachNetns(want: ReadonlyMap<bigint, number>): { attached: number; detached: number; failed: string[] } {
    const dir = netnsDir(this.#dir);
    const have = new Set(fs.readdirSync(dir));
    const out = { attached: 0, detached: 0, failed: [] as string[] };
    for (const name of have) {
      if (want.has(BigInt(name))) continue;
      const pin = path.join(dir, name);
      try {
        const fd = native.bpfObjGet(pin);
        try { native.bpfLinkDetach(fd); } finally { native.closeFd(fd); }
      } catch { /* the netns is gone already */ }
      fs.rmSync(pin, { force: true });
      out.detached++;
    }
    for (const [cookie, netnsFd] of want) {
      if (have.has(String(cookie))) continue;
      try {
        const link = native.bpfLinkCreate(this.#skLookup, netnsFd, constants.BPF_SK_LOOKUP);
        try { native.bpfObjPin(link, path.join(dir, String(cookie))); } finally { native.closeFd(link); }
        out.attached++;
      } catch (err) {
        out.failed.push(`${cookie}: ${(err as Error).message}`);
      }
    }
    return out;
  }

  /** Learns the listeners already open in a pod's netns (the pod must be in the pods map). */
  learnListeners(netnsFd: number): void {
    native.bpfIterRun(this.#learn, netnsFd);
  }

  /**
   * Makes a map hold exactly `want` (by key), writing only what differs from
   * what we last wrote. Only we write these maps, so after a first read (what
   * an earlier daemon left) the kernel is not walked again.
   */
  reconcile(name: 'pods' | 'services' | 'local' | 'authz', want: readonly Entry[]): ReconcileResult {
    const m = this.#maps[name];
    let have = this.#written.get(name);
    if (have === undefined) {
      have = new Map([...this.#entries(m)].map(([k, v]) => [k.toString('hex'), v]));
      this.#written.set(name, have);
    }
    const wanted = new Map(want.map((e) => [e.key.toString('hex'), e]));
    const result: ReconcileResult = { written: 0, removed: 0, refused: 0 };
    for (const hex of have.keys()) {
      if (wanted.has(hex)) continue;
      if (native.mapDelete(m.fd, Buffer.from(hex, 'hex'))) result.removed++;
      have.delete(hex);
    }
    for (const [hex, e] of wanted) {
      if (have.get(hex)?.equals(e.value) === true) continue;
      try {
        native.mapUpdate(m.fd, e.key, e.value, 0);
        have.set(hex, e.value);
        result.written++;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'E2BIG' && code !== 'ENOSPC' && code !== 'ENOMEM') throw err;
        result.refused++;
      }
    }
    return result;
  }

  /** A map's entries as they are in the kernel (a bounded walk). */
  *#entries(m: MapRef): Generator<[Buffer, Buffer]> {
    let key: Buffer | null = null;
    for (let i = 0; i <= m.maxEntries; i++) {
      key = native.mapNextKey(m.fd, key, m.keySize);
      if (key === null) return;
      const value = native.mapLookup(m.fd, key, m.valueSize);
      if (value !== null) yield [key, value];
    }
  }

  /** Same-node flows the kernel approved and that are still open. */
  approvals(): Approval[] {
    const m = this.#maps.approved;
    const out: Approval[] = [];
    for (const [key, value] of this.#entries(m)) out.push(decodeApproval(key, value));
    return out;
  }

  /** The programs' counters, summed over CPUs. */
  stats(): Record<keyof typeof STAT, number> {
    const m = this.#maps.stats;
    const cpus = native.possibleCpus();
    const out = {} as Record<keyof typeof STAT, number>;
    for (const [name, index] of Object.entries(STAT) as [keyof typeof STAT, number][]) {
      if (name === 'max') continue;
      const key = Buffer.alloc(4);
      key.writeUInt32LE(index);
      const v = native.mapLookup(m.fd, key, 8 * cpus);
      let sum = 0n;
      for (let c = 0; v !== null && c < cpus; c++) sum += v.readBigUInt64LE(c * 8);
      out[name] = Number(sum);
    }
    return out;
  }

  /** Entries in a map now (bounded walk). */
  size(name: 'pods' | 'services' | 'flows' | 'local' | 'authz' | 'approved'): number {
    const m = this.#maps[name];
    let n = 0;
    let key: Buffer | null = null;
    while (n <= m.maxEntries && (key = native.mapNextKey(m.fd, key, m.keySize)) !== null) n++;
    return n;
  }

  /** Closes our fds; the pins, and with them the programs, stay. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeAll([...Object.values(this.#maps).map((m) => m.fd), ...this.#links, this.#skLookup, this.#learn]);
  }
}

function closeAll(fds: readonly number[]): void {
  for (const fd of fds) {
    try { native.closeFd(fd); } catch { /* already closed */ }
  }
}
