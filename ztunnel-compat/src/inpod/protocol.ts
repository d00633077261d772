// SPDX-License-Identifier: Apache-2.0
// The ZDS messages as plain TypeScript values, and their protobuf encoding
// (proto/zds.proto). Shared by the daemon's ZDS client and the CNI double.
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const root = protobuf.loadSync(fileURLToPath(new URL('../../proto/zds.proto', import.meta.url)));
const tHello = root.lookupType('istio.workload.zds.ZdsHello');
const tRequest = root.lookupType('istio.workload.zds.WorkloadRequest');
const tResponse = root.lookupType('istio.workload.zds.WorkloadResponse');

/** ZdsHello.version V1. */
export const ZDS_V1 = 1;

/** Both sides read into a 1024-byte buffer and refuse anything longer. */
export const ZDS_MAX_MESSAGE = 1024;

export interface WorkloadInfo {
  name: string;
  namespace: string;
  serviceAccount: string;
}

export type WorkloadRequest =
  | { kind: 'add'; uid: string; workloadInfo: WorkloadInfo | undefined }
  | { kind: 'keep'; uid: string }
  | { kind: 'del'; uid: string }
  | { kind: 'snapshotSent' };

export class ZdsDecodeError extends Error {
  override name = 'ZdsDecodeError';
}

interface RawInfo { name?: string; namespace?: string; serviceAccount?: string }
interface RawRequest {
  add?: { uid?: string; workloadInfo?: RawInfo };
  keep?: { uid?: string };
  del?: { uid?: string };
  snapshotSent?: object;
}

export function encodeHello(version = ZDS_V1): Buffer {
  return Buffer.from(tHello.encode(tHello.create({ version })).finish());
}

export function decodeHello(buf: Buffer): { version: number } {
  try {
    const m = tHello.toObject(tHello.decode(buf), { enums: Number, defaults: true }) as { version: number };
    return { version: m.version };
  } catch (err) {
    throw new ZdsDecodeError(`bad ZdsHello: ${(err as Error).message}`);
  }
}

export function encodeRequest(r: WorkloadRequest): Buffer {
  let payload: RawRequest;
  switch (r.kind) {
    case 'add':
      payload = { add: { uid: r.uid, ...(r.workloadInfo === undefined ? {} : { workloadInfo: r.workloadInfo }) } };
      break;
    case 'keep':
      payload = { keep: { uid: r.uid } };
      break;
    case 'del':
      payload = { del: { uid: r.uid } };
      break;
    case 'snapshotSent':
      payload = { snapshotSent: {} };
      break;
  }
  return Buffer.from(tRequest.encode(tRequest.fromObject(payload)).finish());
}

export function decodeRequest(buf: Buffer): WorkloadRequest {
  let m: RawRequest;
  try {
    m = tRequest.toObject(tRequest.decode(buf), { defaults: false });
  } catch (err) {
    throw new ZdsDecodeError(`bad WorkloadRequest: ${(err as Error).message}`);
  }
  if (m.add !== undefined) {
    const info = m.add.workloadInfo;
    return {
      kind: 'add',
      uid: m.add.uid ?? '',
      workloadInfo: info === undefined ? undefined : { name: info.name ?? '', namespace: info.namespace ?? '', serviceAccount: info.serviceAccount ?? '' },
    };
  }
  if (m.keep !== undefined) return { kind: 'keep', uid: m.keep.uid ?? '' };
  if (m.del !== undefined) return { kind: 'del', uid: m.del.uid ?? '' };
  if (m.snapshotSent !== undefined) return { kind: 'snapshotSent' };
  throw new ZdsDecodeError('WorkloadRequest with no payload');
}

/** WorkloadResponse{ack{error}}; an empty error is success. */
export function encodeAck(error = ''): Buffer {
  return Buffer.from(tResponse.encode(tResponse.fromObject({ ack: { error } })).finish());
}

export function decodeAck(buf: Buffer): { error: string } {
  let m: { ack?: { error?: string } };
  try {
    m = tResponse.toObject(tResponse.decode(buf), { defaults: false });
  } catch (err) {
    throw new ZdsDecodeError(`bad WorkloadResponse: ${(err as Error).message}`);
  }
  if (m.ack === undefined) throw new ZdsDecodeError('WorkloadResponse without ack');
  return { error: m.ack.error ?? '' };
}
