// SPDX-License-Identifier: Apache-2.0
// Sockets whose reads land in pooled buffers (read-buffers.ts) and go to one
// consumer, the relay, which hands each buffer back once the write that
// carried it has completed. Until a consumer is set, a read is held and
// reading pauses, so nothing is lost between accept and relay.
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { dupFd, fdOf } from '@skein/bpf';
import { readBuffers, type ReadBuffers } from './read-buffers.ts';

/** Takes one read; `release` may be called once nothing refers to `chunk`. Returns false to pause reading. */
export type ChunkSink = (chunk: Buffer, release: () => void) => boolean;

const readers = new WeakMap<Duplex, PooledReader>();

class PooledReader {
  readonly #pool: ReadBuffers;
  #socket: net.Socket | undefined;
  #sink: ChunkSink | undefined;
  readonly #held: { chunk: Buffer; buf: Buffer }[] = [];
  #lastRead = 0;
  #lastSize = 1;

  constructor(pool: ReadBuffers) {
    this.#pool = pool;
  }

  readonly onread: net.OnReadOpts = {
    buffer: () => this.#pool.next(this.#lastRead, this.#lastSize),
    callback: (n: number, buf: Uint8Array): boolean => {
      this.#lastRead = n;
      this.#lastSize = buf.length;
      const b = buf as Buffer;
      const chunk = b.subarray(0, n);
      if (this.#sink === undefined) {
        this.#held.push({ chunk, buf: b });
        return false;
      }
      return this.#sink(chunk, () => { this.#pool.give(b); });
    },
  };

  attach(socket: net.Socket): void {
    this.#socket = socket;
  }

  consume(sink: ChunkSink): void {
    if (this.#sink !== undefined) throw new Error('a pooled socket has one consumer');
    this.#sink = sink;
    let more = true;
    for (const { chunk, buf } of this.#held.splice(0)) more = sink(chunk, () => { this.#pool.give(buf); });
    if (more) this.#socket?.resume();
  }
}

/** A socket made by `make` with pooled reads: pass it the `onread` it gets. */
export function pooledSocket(make: (onread: net.OnReadOpts) => net.Socket, pool: ReadBuffers = readBuffers): net.Socket {
  const reader = new PooledReader(pool);
  const socket = make(reader.onread);
  reader.attach(socket);
  readers.set(socket, reader);
  return socket;
}

/**
 * An accepted socket re-opened with pooled reads. net.Server has no way to
 * give the sockets it accepts an `onread`, so the new socket wraps a dup of
 * the fd and the original is closed; the connection itself (and its socket
 * options) is the same kernel socket. Call it before anything reads.
 */
export function adoptPooled(accepted: net.Socket, pool: ReadBuffers = readBuffers): net.Socket {
  if (accepted.bytesRead > 0) throw new Error('adoptPooled: the socket has already read data, which would be lost');
  const fd = dupFd(fdOf(accepted));
  const { allowHalfOpen } = accepted;
  accepted.destroy();
  return pooledSocket((onread) => new net.Socket({ fd, readable: true, writable: true, allowHalfOpen, onread }), pool);
}

/** Whether `s` reads into pooled buffers (pooledSocket, adoptPooled). */
export function isPooled(s: Duplex): boolean {
  return readers.has(s);
}

/** Makes `sink` the consumer of a pooled socket's reads; false when `s` is not one. */
export function consumeReads(s: Duplex, sink: ChunkSink): boolean {
  const reader = readers.get(s);
  if (reader === undefined) return false;
  reader.consume(sink);
  return true;
}
