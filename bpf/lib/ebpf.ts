// SPDX-License-Identifier: Apache-2.0
// eBPF from TypeScript: a thin, typed layer over the addon's fd-based libbpf
// wrapper. Fds are plain numbers; whoever receives one owns it and closes it
// (closeFd). Nothing here blocks: every call is one or two bpf syscalls.
import { constants, native } from './native.ts';
import type { NativeBpfMap, NativeBpfObject, NativeLinkInfo, NativeMapInfo, NativeProgInfo, NativeRingBuffer } from './addon.d.ts';

export type {
  NativeBpfMap as BpfMapSpec,
  NativeBpfObject as BpfObject,
  NativeBpfProgram as BpfProgramSpec,
  NativeLinkInfo as LinkInfo,
  NativeMapInfo as MapInfo,
  NativeProgInfo as ProgInfo,
} from './addon.d.ts';
export { constants };

/**
 * Opens and loads an object file (bpf_object__open_file + load). On failure
 * the error's message ends with libbpf's log (the verifier's, for a refused
 * program). The object owns its program and map fds: pin or dupFd them before
 * close() if they must outlive it.
 */
export const openBpfObject = (path: string): NativeBpfObject => native.bpfObjectOpen(path);

/** Pins a program, map or link fd at a bpffs path. */
export const pin = (fd: number, path: string): void => { native.bpfObjPin(fd, path); };
/** A new fd for what is pinned at `path` (ENOENT when nothing is). */
export const getPinned = (path: string): number => native.bpfObjGet(path);
export const closeFd = (fd: number): void => { native.closeFd(fd); };
export const dupFd = (fd: number): number => native.dupFd(fd);

export const mapInfo = (fd: number): NativeMapInfo => native.mapInfo(fd);
export const progInfo = (fd: number): NativeProgInfo => native.progInfo(fd);
export const linkInfo = (fd: number): NativeLinkInfo => native.linkInfo(fd);
/** Possible CPUs: per-CPU map values have one 8-aligned slot for each. */
export const possibleCpus = (): number => native.possibleCpus();
/** Whether the kernel loads programs of this type. */
export const probeProgType = (type: number): boolean => native.probeProgType(type);
/** Whether the kernel creates maps of this type. */
export const probeMapType = (type: number): boolean => native.probeMapType(type);
/** Whether programs of `progType` may call helper `helperId`. */
export const probeHelper = (progType: number, helperId: number): boolean => native.probeHelper(progType, helperId);

/**
 * Attaches a cgroup program to the cgroup v2 directory `cgroupPath` through a
 * BPF link; returns the link fd. The attachment lasts while the link fd is
 * open or the link is pinned.
 */
export function attachCgroup(progFd: number, cgroupPath: string, attachType: number): number {
  const cgroup = native.openPath(cgroupPath, true);
  try {
    return native.bpfLinkCreate(progFd, cgroup, attachType);
  } finally {
    native.closeFd(cgroup);
  }
}

/** Detaches a link (it stays a valid, defunct fd until closed). */
export const detachLink = (linkFd: number): void => { native.bpfLinkDetach(linkFd); };

/** Attaches a program to a map (sk_msg or sk_skb on a sockmap/sockhash). */
export function attachToMap(progFd: number, mapFd: number, attachType: number, flags = 0): void {
  native.bpfProgAttach(progFd, mapFd, attachType, flags);
}
export function detachFromMap(progFd: number, mapFd: number, attachType: number): void {
  native.bpfProgDetach2(progFd, mapFd, attachType);
}

const perCpuTypes = new Set([
  constants.BPF_MAP_TYPE_PERCPU_ARRAY,
  constants.BPF_MAP_TYPE_PERCPU_HASH,
  constants.BPF_MAP_TYPE_LRU_PERCPU_HASH,
]);

/**
 * A map fd with its key and value sizes. `valueSize` is the size of the
 * Buffers lookup() returns and update() takes: for per-CPU maps one 8-aligned
 * slot per possible CPU. The BpfMap does not own the fd unless close() is
 * called on it.
 */
export class BpfMap {
  readonly fd: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;

  constructor(fd: number, keySize: number, valueSize: number, maxEntries = 0) {
    this.fd = fd;
    this.keySize = keySize;
    this.valueSize = valueSize;
    this.maxEntries = maxEntries;
  }

  /** Sizes read from the kernel (mapInfo). */
  static fromFd(fd: number): BpfMap {
    const i = native.mapInfo(fd);
    return new BpfMap(fd, i.keySize, bufferSize(i.type, i.valueSize), i.maxEntries);
  }

  /** One of a BpfObject's maps(); the object still owns the fd. */
  static fromObject(m: NativeBpfMap): BpfMap {
    return new BpfMap(m.fd, m.keySize, bufferSize(m.type, m.valueSize), m.maxEntries);
  }

  update(key: Buffer, value: Buffer, flags: number = constants.BPF_ANY): void {
    native.mapUpdate(this.fd, key, value, flags);
  }

  /** null when absent. */
  lookup(key: Buffer): Buffer | null {
    return native.mapLookup(this.fd, key, this.valueSize);
  }

  /** false when absent. */
  delete(key: Buffer): boolean {
    return native.mapDelete(this.fd, key);
  }

  /**
   * The keys, at most `limit` of them (default: maxEntries, or 65536 when
   * unknown): a hash map changing under iteration can restart the walk, and
   * the bound keeps that finite.
   */
  *keys(limit = this.maxEntries > 0 ? this.maxEntries : 65536): Generator<Buffer> {
    let key: Buffer | null = null;
    for (let n = 0; n < limit; n++) {
      key = native.mapNextKey(this.fd, key, this.keySize);
      if (key === null) return;
      yield key;
    }
  }

  /** Closes the fd. */
  close(): void {
    native.closeFd(this.fd);
  }
}

function bufferSize(type: number, valueSize: number): number {
  return perCpuTypes.has(type) ? Math.ceil(valueSize / 8) * 8 * native.possibleCpus() : valueSize;
}

/**
 * new RingBuffer(mapFd, onRecord): consumes a BPF_MAP_TYPE_RINGBUF map on
 * Node's loop once start()ed; each record arrives as its own Buffer copy.
 */
export const RingBuffer = native.RingBuffer;
export type RingBuffer = NativeRingBuffer;
