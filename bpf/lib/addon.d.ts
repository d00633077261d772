// SPDX-License-Identifier: Apache-2.0
// Types of the native addon (src/addon.cc). Every function validates its
// arguments and throws a TypeError ("Usage: …") or an Error whose `code` is
// the errno name; none of them blocks.

export interface NativeAddress {
  address: string;
  port: number;
  family: 4 | 6;
}

export interface NativeMessage {
  data: Buffer;
  /** The fd that came with the message, or -1. */
  fd: number;
  /** The peer closed its end. */
  eof: boolean;
}

export interface NativeConstants {
  SOL_SOCKET: number;
  SOL_IP: number;
  SOL_IPV6: number;
  IPPROTO_TCP: number;
  SO_MARK: number;
  SO_REUSEADDR: number;
  SO_REUSEPORT: number;
  IP_TRANSPARENT: number;
  IP_FREEBIND: number;
  IPV6_TRANSPARENT: number;
  IPV6_FREEBIND: number;
  IPV6_V6ONLY: number;
  TCP_NODELAY: number;
  SO_KEEPALIVE: number;
  TCP_KEEPIDLE: number;
  TCP_KEEPINTVL: number;
  TCP_KEEPCNT: number;
  UV_READABLE: number;
  UV_WRITABLE: number;
  BPF_PROG_TYPE_SOCKET_FILTER: number;
  BPF_PROG_TYPE_SCHED_CLS: number;
  BPF_PROG_TYPE_SOCK_OPS: number;
  BPF_PROG_TYPE_SK_MSG: number;
  BPF_PROG_TYPE_CGROUP_SOCK_ADDR: number;
  BPF_PROG_TYPE_CGROUP_SOCK: number;
  BPF_PROG_TYPE_CGROUP_SKB: number;
  BPF_PROG_TYPE_SK_LOOKUP: number;
  BPF_CGROUP_INET4_CONNECT: number;
  BPF_CGROUP_INET6_CONNECT: number;
  BPF_CGROUP_SOCK_OPS: number;
  BPF_SK_MSG_VERDICT: number;
  BPF_CGROUP_INET4_GETPEERNAME: number;
  BPF_CGROUP_INET6_GETPEERNAME: number;
  BPF_CGROUP_INET4_GETSOCKNAME: number;
  BPF_CGROUP_INET_SOCK_RELEASE: number;
  BPF_SK_LOOKUP: number;
  BPF_TRACE_ITER: number;
  BPF_MAP_TYPE_HASH: number;
  BPF_MAP_TYPE_ARRAY: number;
  BPF_MAP_TYPE_LRU_HASH: number;
  BPF_MAP_TYPE_SOCKHASH: number;
  BPF_MAP_TYPE_SOCKMAP: number;
  BPF_MAP_TYPE_RINGBUF: number;
  BPF_MAP_TYPE_PERCPU_ARRAY: number;
  BPF_MAP_TYPE_PERCPU_HASH: number;
  BPF_MAP_TYPE_LRU_PERCPU_HASH: number;
  BPF_FUNC_get_netns_cookie: number;
  BPF_FUNC_sk_assign: number;
  BPF_FUNC_get_socket_cookie: number;
  BPF_FUNC_setsockopt: number;
  BPF_FUNC_msg_redirect_hash: number;
  BPF_FUNC_sock_hash_update: number;
  BPF_FUNC_ringbuf_output: number;
  BPF_FUNC_ringbuf_reserve: number;
  BPF_ANY: number;
  BPF_NOEXIST: number;
  BPF_EXIST: number;
  BPF_F_ALLOW_MULTI: number;
  /** statfs f_type of a bpf filesystem (linux/magic.h). */
  BPF_FS_MAGIC: number;
  /** statfs f_type of sysfs: /sys/fs/bpf with nothing mounted on it. */
  SYSFS_MAGIC: number;
}

export interface NativePoller {
  start(events: number): void;
  stop(): void;
  close(): void;
}

export interface NativeBpfProgram {
  name: string;
  /** Owned by the object: invalid after close(); dupFd or pin it to keep it. */
  fd: number;
  type: number;
  expectedAttachType: number;
  section: string;
}

export interface NativeBpfMap {
  name: string;
  /** Owned by the object: invalid after close(); dupFd or pin it to keep it. */
  fd: number;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
}

/** A loaded object file (libbpf's bpf_object). */
export interface NativeBpfObject {
  programs(): NativeBpfProgram[];
  maps(): NativeBpfMap[];
  /**
   * bpf_object__close: every fd programs() and maps() returned is closed.
   * Programs and maps live on only if pinned, attached by a link, or held by
   * an fd the caller made with dupFd first. Idempotent; also done on GC.
   */
  close(): void;
}

export interface NativeMapInfo {
  id: number;
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
}

export interface NativeProgInfo {
  id: number;
  name: string;
  type: number;
  /** The program's tag, 16 hex digits (as bpftool shows it). */
  tag: string;
}

export interface NativeLinkInfo {
  id: number;
  progId: number;
  type: number;
}

/**
 * A BPF ring buffer's consumer. Records are copied and passed to onRecord
 * synchronously, from the loop while started, or from consume().
 */
export interface NativeRingBuffer {
  /** Watch the ring on Node's loop; keeps the process (and this object) alive. */
  start(): void;
  stop(): void;
  /** Frees the consumer. Idempotent; from onRecord it stops delivery at once. */
  close(): void;
  /** Delivers what is in the ring now (at most 4096); returns how many. */
  consume(): number;
}

export interface Native {
  constants: NativeConstants;
  openNetns(path: string): number;
  createSocket(family: 4 | 6, kind: 'stream' | 'dgram', netnsFd: number): number;
  /** Writes /proc/sys/<name> (under net/) as seen from the namespace `netnsFd`. */
  setNetnsSysctl(netnsFd: number, name: string, value: string): void;
  /** Raises the soft RLIMIT_NOFILE to the hard one (never lowers it); -1 is unlimited. */
  raiseNofileLimit(): { before: number; soft: number; hard: number };
  /** glibc malloc_trim(0): free heap pages back to the kernel; true when some were. */
  mallocTrim(): boolean;
  /** V8 MemoryPressureNotification(kCritical): a memory-reducing collection now, freed pages back to the kernel. */
  memoryPressure(): void;
  setIntOpt(fd: number, level: number, name: number, value: number): void;
  getIntOpt(fd: number, level: number, name: number): number;
  bind(fd: number, address: string, port: number): void;
  listen(fd: number, backlog: number): void;
  localAddress(fd: number): NativeAddress;
  originalDst(fd: number): NativeAddress;
  netnsCookie(fd: number): bigint;
  seqpacketListen(path: string, backlog: number): number;
  seqpacketConnect(path: string): number;
  accept(fd: number): number | null;
  sendMessage(fd: number, data: Buffer, passFd: number): boolean;
  recvMessage(fd: number, maxLength: number): NativeMessage | null;
  Poller: new (fd: number, onEvent: (status: number, events: number) => void) => NativePoller;
  libbpfVersion(): string;

  /** bpf_object__open_file + bpf_object__load; errors carry libbpf's log tail. */
  bpfObjectOpen(path: string): NativeBpfObject;
  bpfObjPin(fd: number, path: string): void;
  /** ENOENT when nothing is pinned there. */
  bpfObjGet(path: string): number;
  closeFd(fd: number): void;
  /** fcntl(F_DUPFD_CLOEXEC). */
  dupFd(fd: number): number;
  /** statfs(2) f_type of the filesystem `path` is on; ENOENT when it does not exist. */
  statfsType(path: string): number;
  /**
   * Mounts a bpf filesystem on the directory `path` (nosuid,nodev,noexec,mode=0700)
   * unless one is there; checked and mounted under an flock on `path`, so racing
   * callers mount one. True when it mounted.
   */
  mountBpffs(path: string): boolean;
  /** An O_RDONLY|O_CLOEXEC|O_NONBLOCK fd, with O_DIRECTORY when asked (cgroup dirs). */
  openPath(path: string, directory: boolean): number;
  /** bpf_link_create without options; returns the link fd. */
  bpfLinkCreate(progFd: number, targetFd: number, attachType: number): number;
  /** Creates an iterator from `linkFd` inside the netns `netnsFd` and reads it to the end; returns the bytes read. */
  bpfIterRun(linkFd: number, netnsFd: number): number;
  bpfLinkDetach(linkFd: number): void;
  bpfProgAttach(progFd: number, targetFd: number, attachType: number, flags: number): void;
  bpfProgDetach2(progFd: number, targetFd: number, attachType: number): void;
  /**
   * Map operations. Key and value Buffers must be exactly the map's sizes
   * (per-CPU values: round_up(valueSize, 8) × possibleCpus()), else EINVAL.
   */
  mapUpdate(fd: number, key: Buffer, value: Buffer, flags: number): void;
  /** null when the key is absent. */
  mapLookup(fd: number, key: Buffer, valueSize: number): Buffer | null;
  /** false when the key was absent. */
  mapDelete(fd: number, key: Buffer): boolean;
  /** The key after `key` (null: the first); null at the end. */
  mapNextKey(fd: number, key: Buffer | null, keySize: number): Buffer | null;
  possibleCpus(): number;
  mapInfo(fd: number): NativeMapInfo;
  progInfo(fd: number): NativeProgInfo;
  linkInfo(fd: number): NativeLinkInfo;
  probeProgType(type: number): boolean;
  probeHelper(progType: number, helperId: number): boolean;
  probeMapType(type: number): boolean;
  /** ring_buffer__new on a RINGBUF map fd (which may be closed afterwards). */
  RingBuffer: new (mapFd: number, onRecord: (data: Buffer) => void) => NativeRingBuffer;
}
