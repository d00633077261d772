// SPDX-License-Identifier: Apache-2.0
// Unix SOCK_SEQPACKET sockets carrying at most one fd per message
// (SCM_RIGHTS), as istio-cni's ZDS protocol uses them. Event-driven on Node's
// own loop through a Poller; nothing here blocks.
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import { constants as c, native } from './native.ts';
import type { NativePoller } from './addon.d.ts';

export interface SeqpacketOptions {
  /** Longest message accepted; longer ones are refused (EMSGSIZE), not cut. */
  maxMessageSize?: number;
}

interface PendingSend {
  data: Buffer;
  fd: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * One end of a SEQPACKET connection.
 * Events: 'message' (data: Buffer, fd: number | undefined) — the listener owns
 * the fd and must close it; 'error' (err) — a refused message (truncated, more
 * than one fd) or a socket failure; 'close'.
 */
export class SeqpacketSocket extends EventEmitter {
  readonly #fd: number;
  readonly #poller: NativePoller;
  readonly #maxMessageSize: number;
  readonly #queue: PendingSend[] = [];
  #closed = false;

  /** Connects to a listening socket at `path`. */
  static connect(path: string, options: SeqpacketOptions = {}): SeqpacketSocket {
    if (typeof path !== 'string') throw new TypeError('SeqpacketSocket.connect: path must be a string');
    return new SeqpacketSocket(native.seqpacketConnect(path), options);
  }

  /** Takes ownership of a connected SEQPACKET fd. */
  constructor(fd: number, options: SeqpacketOptions = {}) {
    super();
    const max = options.maxMessageSize ?? 64 * 1024;
    if (!Number.isInteger(max) || max <= 0 || max > 1 << 20) {
      throw new RangeError(`maxMessageSize must be 1..${1 << 20}, got ${max}`);
    }
    this.#fd = fd;
    this.#maxMessageSize = max;
    this.#poller = new native.Poller(fd, (status, events) => { this.#onEvent(status, events); });
    this.#poller.start(c.UV_READABLE);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Sends one message, with `fd` attached when given (the fd stays ours to
   * close; the peer gets its own copy). Resolves once the kernel took it.
   */
  send(data: Buffer, fd?: number): Promise<void> {
    if (!Buffer.isBuffer(data)) return Promise.reject(new TypeError('send: data must be a Buffer'));
    if (fd !== undefined && (!Number.isInteger(fd) || fd < 0)) {
      return Promise.reject(new TypeError(`send: fd must be a non-negative integer, got ${fd}`));
    }
    if (this.#closed) return Promise.reject(closedError());
    return new Promise((resolve, reject) => {
      this.#queue.push({ data, fd: fd ?? -1, resolve, reject });
      if (this.#queue.length === 1) this.#flush();
    });
  }

  /** Closes the socket; pending sends fail. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#poller.close();
    fs.closeSync(this.#fd);
    for (const p of this.#queue.splice(0)) p.reject(closedError());
    process.nextTick(() => this.emit('close'));
  }

  #flush(): void {
    try {
      for (let p = this.#queue[0]; p !== undefined; p = this.#queue[0]) {
        if (!native.sendMessage(this.#fd, p.data, p.fd)) break;
        this.#queue.shift();
        p.resolve();
      }
    } catch (err) {
      this.#queue.shift()?.reject(err as Error);
      this.#fail(err as Error);
      return;
    }
    this.#poller.start(this.#queue.length > 0 ? c.UV_READABLE | c.UV_WRITABLE : c.UV_READABLE);
  }

  #onEvent(status: number, events: number): void {
    if (this.#closed) return;
    if (status < 0) {
      this.#fail(Object.assign(new Error(`poll failed (${status})`), { errno: -status }));
      return;
    }
    if (events & c.UV_WRITABLE) this.#flush();
    if (events & c.UV_READABLE) this.#drain();
  }

  #drain(): void {
    while (!this.#closed) {
      let msg;
      try {
        msg = native.recvMessage(this.#fd, this.#maxMessageSize);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        // A refused message was consumed whole; the connection stays usable.
        if (e.code === 'EMSGSIZE' || e.code === 'EPROTO') {
          this.emit('error', e);
          continue;
        }
        this.#fail(e);
        return;
      }
      if (msg === null) return;
      if (msg.eof) {
        this.close();
        return;
      }
      const fd = msg.fd >= 0 ? msg.fd : undefined;
      if (fd !== undefined && this.listenerCount('message') === 0) fs.closeSync(fd);
      this.emit('message', msg.data, fd);
    }
  }

  #fail(err: Error): void {
    if (this.#closed) return;
    this.emit('error', err);
    this.close();
  }
}

/**
 * A listening SEQPACKET socket at a filesystem path.
 * Events: 'connection' (socket: SeqpacketSocket), 'error', 'close'.
 */
export class SeqpacketServer extends EventEmitter {
  readonly path: string;
  readonly #fd: number;
  readonly #poller: NativePoller;
  readonly #options: SeqpacketOptions;
  #closed = false;

  constructor(path: string, options: SeqpacketOptions & { backlog?: number } = {}) {
    super();
    if (typeof path !== 'string') throw new TypeError('SeqpacketServer: path must be a string');
    this.path = path;
    this.#options = options;
    this.#fd = native.seqpacketListen(path, options.backlog ?? 16);
    this.#poller = new native.Poller(this.#fd, (status) => { this.#onReadable(status); });
    this.#poller.start(c.UV_READABLE);
  }

  /** Stops listening and removes the socket file. Open connections stay. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#poller.close();
    fs.closeSync(this.#fd);
    fs.rmSync(this.path, { force: true });
    process.nextTick(() => this.emit('close'));
  }

  #onReadable(status: number): void {
    if (this.#closed) return;
    if (status < 0) {
      this.emit('error', Object.assign(new Error(`poll failed (${status})`), { errno: -status }));
      return;
    }
    for (;;) {
      let fd: number | null;
      try {
        fd = native.accept(this.#fd);
      } catch (err) {
        this.emit('error', err);
        return;
      }
      if (fd === null) return;
      this.emit('connection', new SeqpacketSocket(fd, this.#options));
    }
  }
}

function closedError(): Error {
  return Object.assign(new Error('socket is closed'), { code: 'ERR_SOCKET_CLOSED' });
}
