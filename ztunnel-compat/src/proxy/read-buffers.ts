// SPDX-License-Identifier: Apache-2.0
// Reusable read buffers for the plaintext sockets Skein relays. Left to
// itself Node allocates a fresh 64 KiB ArrayBuffer for every socket read;
// under bulk load that external memory makes V8 run a full mark-compact of
// the whole heap several times a second (HBONE bench: 5/s in the sending
// proxy). A socket waiting for data holds a small buffer, so an idle
// connection costs 4 KiB per relayed socket; one whose last read filled its
// buffer gets a large one for the next.

export const SMALL_READ = 4 * 1024;
export const LARGE_READ = 64 * 1024;

/** Buffers of one size; at most `maxFree` kept when given back. */
export class BufferPool {
  readonly size: number;
  readonly maxFree: number;
  readonly #free: Buffer[] = [];

  constructor(size: number, maxFree: number) {
    this.size = size;
    this.maxFree = maxFree;
  }

  take(): Buffer {
    return this.#free.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  /** Only for a buffer nothing refers to any more (its write completed). */
  give(buf: Buffer): void {
    if (buf.length === this.size && buf.byteOffset === 0 && this.#free.length < this.maxFree) this.#free.push(buf);
  }

  get free(): number {
    return this.#free.length;
  }
}

export class ReadBuffers {
  readonly small = new BufferPool(SMALL_READ, 1024);
  readonly large = new BufferPool(LARGE_READ, 64);

  /** The buffer for a socket's next read, given how much its last read put in how big a buffer. */
  next(lastRead: number, lastSize: number): Buffer {
    return lastRead >= lastSize ? this.large.take() : this.small.take();
  }

  give(buf: Buffer): void {
    (buf.length === LARGE_READ ? this.large : this.small).give(buf);
  }
}

/** The process's pools: every relayed socket shares them. */
export const readBuffers = new ReadBuffers();
