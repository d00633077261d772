// SPDX-License-Identifier: Apache-2.0
// @skein/bpf: the kernel side of Skein as seen from TypeScript.
export { native, constants } from './native.ts';
export type { NativeAddress } from './addon.d.ts';
export { netnsCookieOf, openNetns, setNetnsSysctl, withNetnsFd, type NetnsRef } from './netns.ts';
export { mallocTrim, memoryPressure, raiseNofileLimit } from './process.ts';
export {
  bindUdp,
  connectTcp,
  fdOf,
  getSocketOption,
  listenFd,
  listenTcp,
  netnsCookie,
  originalDst,
  setSocketOptions,
  type ConnectOptions,
  type CreateOptions,
  type ListenOptions,
  type SocketAddress,
  type SocketOptions,
  type TcpKeepalive,
  type UdpOptions,
} from './sockets.ts';
export { isBpffs, mountBpffs, statfsType } from './bpffs.ts';
export { SeqpacketServer, SeqpacketSocket, type SeqpacketOptions } from './seqpacket.ts';
export {
  createHboneEngine,
  hboneEngineUnavailable,
  type HboneAnswer,
  type HboneDial,
  type HboneEngine,
  type HboneEngineEvent,
  type HboneInboundRequest,
  type HboneEngineOptions,
  type HboneEngineStats,
  type HboneOutboundRequest,
  type HboneSessionClose,
  type HboneTunnelClose,
} from './hbone-engine.ts';

import { native } from './native.ts';
/** The libbpf version the addon links (Debian's libbpf-dev). */
export const libbpfVersion = (): string => native.libbpfVersion();
export {
  attachCgroup,
  attachToMap,
  BpfMap,
  closeFd,
  detachFromMap,
  detachLink,
  dupFd,
  getPinned,
  linkInfo,
  mapInfo,
  openBpfObject,
  pin,
  possibleCpus,
  probeHelper,
  probeMapType,
  probeProgType,
  progInfo,
  RingBuffer,
  type BpfMapSpec,
  type BpfObject,
  type BpfProgramSpec,
  type LinkInfo,
  type MapInfo,
  type ProgInfo,
} from './ebpf.ts';
