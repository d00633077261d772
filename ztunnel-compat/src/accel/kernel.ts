// SPDX-License-Identifier: Apache-2.0
// The kernel side's lifetime: load the eBPF object and attach its programs to
// the pods' cgroup through links pinned in our bpffs directory — or adopt
// what a previous daemon pinned there, so steered connections keep working
// across restarts and upgrades — and write the maps. `cleanup` removes it
// all (`skein proxy --cleanup`).
import fs from 'node:fs';
import path from 'node:path';
import { constants, native } from '@skein/bpf';
import { LAYOUT, MAPS, PROGRAMS, STAT } from './layout.ts';

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
  flows: { keySize: 8, valueSize: LAYOUT.skein_flow.size },
  events: { keySize: 0, valueSize: 0 },
  stats: { keySize: 4, valueSize: 8 },
};

/** Which program attaches where (the target is the cgroup). */
const ATTACH: [keyof typeof PROGRAMS, () => number][] = [
  ['connect4', () => constants.BPF_CGROUP_INET4_CONNECT],
  ['sockops', () => constants.BPF_CGROUP_SOCK_OPS],
  ['sockRelease', () => constants.BPF_CGROUP_INET_SOCK_RELEASE],
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

export class KernelState {
  readonly adopted: boolean;
  readonly #maps: Record<MapName, MapRef>;
  readonly #links: number[];
  #closed = false;

  private constructor(maps: Record<MapName, MapRef>, links: number[], adopted: boolean) {
    this.#maps = maps;
    this.#links = links;
    this.adopted = adopted;
  }

  /** Adopts the pinned programs and maps when they are complete and of our layout; else loads afresh. */
  static open(o: { objectPath: string; bpffsDir: string; cgroupPath: string }): KernelState {
    const adopted = KernelState.#adopt(o.bpffsDir);
    if (adopted !== undefined) return adopted;
    KernelState.cleanup(o.bpffsDir);
    return KernelState.#load(o);
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
      return new KernelState(maps, links, true);
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
      fs.mkdirSync(mapsDir(o.bpffsDir), { recursive: true });
      fs.mkdirSync(linksDir(o.bpffsDir), { recursive: true });
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
      return new KernelState(maps, links, false);
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
    for (const sub of [linksDir(dir), mapsDir(dir)]) {
      let names: string[] = [];
      try { names = fs.readdirSync(sub); } catch { continue; }
      for (const n of names) {
        const pin = path.join(sub, n);
        if (sub === linksDir(dir)) {
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

  /** Makes a map hold exactly `want` (by key), touching only what differs. */
  reconcile(name: 'pods' | 'services', want: readonly Entry[]): ReconcileResult {
    const m = this.#maps[name];
    const wanted = new Map(want.map((e) => [e.key.toString('hex'), e]));
    const result: ReconcileResult = { written: 0, removed: 0, refused: 0 };
    const stale: Buffer[] = [];
    let key: Buffer | null = null;
    for (let i = 0; i <= m.maxEntries; i++) {
      key = native.mapNextKey(m.fd, key, m.keySize);
      if (key === null) break;
      if (!wanted.has(key.toString('hex'))) stale.push(key);
    }
    for (const k of stale) if (native.mapDelete(m.fd, k)) result.removed++;
    for (const e of wanted.values()) {
      const now = native.mapLookup(m.fd, e.key, m.valueSize);
      if (now !== null && now.equals(e.value)) continue;
      try {
        native.mapUpdate(m.fd, e.key, e.value, 0);
        result.written++;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'E2BIG' && code !== 'ENOSPC' && code !== 'ENOMEM') throw err;
        result.refused++;
      }
    }
    return result;
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
  size(name: 'pods' | 'services' | 'flows'): number {
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
    closeAll([...Object.values(this.#maps).map((m) => m.fd), ...this.#links]);
  }
}

function closeAll(fds: readonly number[]): void {
  for (const fd of fds) {
    try { native.closeFd(fd); } catch { /* already closed */ }
  }
  return undefined;
}
