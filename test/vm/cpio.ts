// SPDX-License-Identifier: Apache-2.0
// The initramfs archive the VM boots from: the "newc" cpio format the kernel
// unpacks (Documentation/driver-api/early-userspace/buffer-format.rst). Written
// here rather than with cpio(1) because the host need not have it, and an
// in-memory list of entries is all the VM lab ever packs.

export type CpioEntry =
  | { kind: 'dir'; path: string; mode?: number }
  | { kind: 'file'; path: string; data: Uint8Array; mode?: number }
  | { kind: 'symlink'; path: string; target: string }
  | { kind: 'chardev'; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function hex8(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`cpio: field out of range: ${n}`);
  return n.toString(16).padStart(8, '0');
}

/** Pads to the 4-byte boundary newc requires after the header+name and after the data. */
function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

function header(ino: number, mode: number, size: number, name: string, rdev: [number, number] = [0, 0]): Buffer {
  const nameBytes = Buffer.from(`${name}\0`, 'utf8');
  const fields = [
    '070701', hex8(ino), hex8(mode), hex8(0), hex8(0), hex8(1), hex8(0), hex8(size),
    hex8(0), hex8(0), hex8(rdev[0]), hex8(rdev[1]), hex8(nameBytes.length), hex8(0),
  ].join('');
  const head = Buffer.concat([Buffer.from(fields, 'ascii'), nameBytes]);
  return Buffer.concat([head, Buffer.alloc(pad4(head.length))]);
}

/** Builds a newc archive of the entries, in order, ending with the TRAILER!!! record. */
export function cpioArchive(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  for (const e of entries) {
    const name = e.path.replace(/^\/+/, '');
    if (name === '' || name.split('/').includes('..')) throw new Error(`cpio: bad path ${JSON.stringify(e.path)}`);
    let data: Buffer = Buffer.alloc(0);
    let mode: number;
    let rdev: [number, number] = [0, 0];
    switch (e.kind) {
      case 'dir': mode = S_IFDIR | (e.mode ?? 0o755); break;
      case 'file': mode = S_IFREG | (e.mode ?? 0o644); data = Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength); break;
      case 'symlink': mode = S_IFLNK | 0o777; data = Buffer.from(e.target, 'utf8'); break;
      case 'chardev': mode = S_IFCHR | (e.mode ?? 0o600); rdev = [e.major, e.minor]; break;
    }
    parts.push(header(ino++, mode, data.length, name, rdev), data, Buffer.alloc(pad4(data.length)));
  }
  parts.push(header(0, 0, 0, 'TRAILER!!!'));
  return Buffer.concat(parts);
}
