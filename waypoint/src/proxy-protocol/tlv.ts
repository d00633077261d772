// SPDX-License-Identifier: Apache-2.0
// PROXY v2 TLVs: type (1 byte), length (2 bytes, big endian), value. The
// vectors Istio uses: 0xD0 carries the peer's SPIFFE identity, 0xD1 the
// service the client addressed (workload.proto, ApplicationTunnel).
export const TLV_PEER_IDENTITY = 0xd0;
export const TLV_SERVICE_HOSTNAME = 0xd1;

export interface Tlv {
  type: number;
  value: Buffer;
}

export class TlvError extends Error {
  override name = 'TlvError';
}

export function encodeTlvs(tlvs: readonly Tlv[]): Buffer {
  const parts: Buffer[] = [];
  for (const t of tlvs) {
    if (!Number.isInteger(t.type) || t.type < 0 || t.type > 0xff) throw new TlvError(`TLV type ${t.type} is not a byte`);
    if (t.value.length > 0xffff) throw new TlvError(`TLV 0x${t.type.toString(16)} is ${t.value.length} bytes; at most 65535 fit`);
    const head = Buffer.alloc(3);
    head.writeUInt8(t.type, 0);
    head.writeUInt16BE(t.value.length, 1);
    parts.push(head, t.value);
  }
  return Buffer.concat(parts);
}

/** Every TLV in `bytes`, which must hold whole TLVs and nothing else. */
export function decodeTlvs(bytes: Buffer): Tlv[] {
  const out: Tlv[] = [];
  let at = 0;
  while (at < bytes.length) {
    if (bytes.length - at < 3) throw new TlvError(`${bytes.length - at} stray bytes after the last TLV`);
    const type = bytes.readUInt8(at);
    const len = bytes.readUInt16BE(at + 1);
    if (at + 3 + len > bytes.length) throw new TlvError(`TLV 0x${type.toString(16)} claims ${len} bytes; ${bytes.length - at - 3} remain`);
    out.push({ type, value: bytes.subarray(at + 3, at + 3 + len) });
    at += 3 + len;
  }
  return out;
}
