// SPDX-License-Identifier: Apache-2.0
// The node proxy's side of ZDS (reference §4.1-4.2; ztunnel inpod/workloadmanager.rs):
// connect to istio-cni's SOCK_SEQPACKET socket, say Hello, then answer every
// message with exactly one Ack — never anything unsolicited. Snapshot: Add
// (with the pod netns fd) / Keep, then SnapshotSent, after which pods not
// named are drained. Protocol errors are nacked and the connection is
// re-established with backoff (10 ms ×2, max 15 s).
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import { SeqpacketSocket } from '@skein/bpf';
import type { WorkloadProxyManager } from './manager.ts';
import { decodeRequest, encodeAck, encodeHello, ZDS_MAX_MESSAGE, type WorkloadRequest } from './protocol.ts';

export class ZdsProtocolError extends Error {
  override name = 'ZdsProtocolError';
  readonly code = 'SKEIN_ZDS_PROTOCOL';
}

export interface ZdsClientOptions {
  /** INPOD_UDS */
  path: string;
  manager: WorkloadProxyManager;
  backoff?: { initialMs: number; maxMs: number };
  log?: { info(o: object, m: string): void; warn(o: object, m: string): void };
}

/**
 * Events: 'snapshot' (after SnapshotSent was handled), 'connected',
 * 'disconnected' (reason), 'protocolError' (err).
 */
export class ZdsClient extends EventEmitter {
  readonly #o: ZdsClientOptions;
  #socket: SeqpacketSocket | undefined;
  #timer: NodeJS.Timeout | undefined;
  #delayMs: number;
  #stopped = true;
  /** Per connection: 'snapshot' until SnapshotSent, then 'live'. */
  #phase: 'snapshot' | 'live' = 'snapshot';
  #seen = new Set<string>();
  #queue: Promise<void> = Promise.resolve();
  /** The message being handled has been answered (acked, or nacked as a protocol error). */
  #acked = false;
  #snapshotDone = false;

  constructor(o: ZdsClientOptions) {
    super();
    this.#o = o;
    this.#delayMs = o.backoff?.initialMs ?? 10;
  }

  /** True once a snapshot was received (stays true across reconnects). */
  get snapshotReceived(): boolean {
    return this.#snapshotDone;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#connect();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#socket?.close();
    this.#socket = undefined;
  }

  #connect(): void {
    if (this.#stopped) return;
    let socket: SeqpacketSocket;
    try {
      socket = SeqpacketSocket.connect(this.#o.path, { maxMessageSize: ZDS_MAX_MESSAGE });
    } catch (err) {
      this.#reconnect(`connect ${this.#o.path}: ${(err as Error).message}`);
      return;
    }
    this.#socket = socket;
    this.#phase = 'snapshot';
    this.#seen = new Set();
    socket.on('message', (data: Buffer, fd: number | undefined) => {
      // One message at a time, in order: each is acked before the next. A
      // handler that fails unexpectedly (a pod's proxy whose stop threw) is
      // acked with its error; left rejected, the queue would skip every
      // later message for the daemon's life.
      // (Only if it was not acked yet: a second ack would answer the next message.)
      this.#queue = this.#queue.then(() => {
        this.#acked = false;
        return this.#handle(socket, data, fd);
      }).catch(async (err: unknown) => {
        const message = err instanceof Error ? err.message : String(err);
        this.#o.log?.warn({ scope: 'inpod', err: message }, 'ZDS message failed');
        if (!this.#acked) await this.#ack(socket, message);
      });
    });
    socket.on('error', (err: Error) => {
      // A truncated message or stray control data: a protocol error.
      this.#protocolError(socket, new ZdsProtocolError(`bad message from istio-cni: ${err.message}`));
    });
    socket.on('close', () => {
      if (this.#socket !== socket) return;
      this.#socket = undefined;
      this.#reconnect('connection closed by istio-cni');
    });
    socket.send(encodeHello()).then(() => {
      this.#delayMs = this.#o.backoff?.initialMs ?? 10;
      this.emit('connected');
      this.#o.log?.info({ scope: 'inpod', path: this.#o.path }, 'connected to istio-cni');
    }, (err: unknown) => { this.#protocolError(socket, err as Error); });
  }

  #reconnect(reason: string): void {
    this.emit('disconnected', reason);
    if (this.#stopped) return;
    this.#o.log?.warn({ scope: 'inpod', reason, retryMs: this.#delayMs }, 'ZDS connection lost; reconnecting');
    const delay = this.#delayMs;
    this.#delayMs = Math.min(this.#delayMs * 2, this.#o.backoff?.maxMs ?? 15_000);
    this.#timer = setTimeout(() => { this.#connect(); }, delay);
  }

  /** Nack, then drop the connection; the reconnect starts a fresh snapshot. */
  #protocolError(socket: SeqpacketSocket, err: Error): void {
    if (socket.closed) return;
    this.emit('protocolError', err);
    this.#o.log?.warn({ scope: 'inpod', err: err.message }, 'ZDS protocol error');
    this.#acked = true;
    socket.send(encodeAck(err.message)).catch(() => undefined).finally(() => { socket.close(); });
  }

  async #handle(socket: SeqpacketSocket, data: Buffer, fd: number | undefined): Promise<void> {
    if (socket.closed) {
      if (fd !== undefined) fs.closeSync(fd);
      return;
    }
    let req: WorkloadRequest;
    try {
      req = decodeRequest(data);
    } catch (err) {
      if (fd !== undefined) fs.closeSync(fd);
      this.#protocolError(socket, new ZdsProtocolError((err as Error).message));
      return;
    }
    // Only Add carries an fd; an fd anywhere else is refused (and closed).
    if (req.kind !== 'add' && fd !== undefined) {
      fs.closeSync(fd);
      await this.#ack(socket, `unexpected fd with ${req.kind}`);
      return;
    }
    switch (req.kind) {
      case 'add': {
        if (req.workloadInfo === undefined) {
          if (fd !== undefined) fs.closeSync(fd);
          this.#protocolError(socket, new ZdsProtocolError(`Add ${req.uid} without workload_info`));
          return;
        }
        if (fd === undefined) {
          await this.#ack(socket, `Add ${req.uid} carried no netns fd`);
          return;
        }
        if (this.#phase === 'snapshot') this.#seen.add(req.uid);
        let error = '';
        try {
          await this.#o.manager.add(req.uid, req.workloadInfo, fd);
        } catch (err) {
          error = `failed to start the proxy of ${req.workloadInfo.namespace}/${req.workloadInfo.name}: ${(err as Error).message}`;
        }
        await this.#ack(socket, error);
        return;
      }
      case 'keep':
        if (this.#phase !== 'snapshot') {
          this.#protocolError(socket, new ZdsProtocolError(`Keep ${req.uid} after the snapshot`));
          return;
        }
        // istio-cni holds no netns for this pod: keep ours if we have one.
        this.#seen.add(req.uid);
        if (!this.#o.manager.has(req.uid)) this.#o.log?.warn({ scope: 'inpod', uid: req.uid }, 'Keep for a pod this proxy does not know');
        await this.#ack(socket, '');
        return;
      case 'del':
        await this.#o.manager.del(req.uid);
        await this.#ack(socket, '');
        return;
      case 'snapshotSent': {
        if (this.#phase !== 'snapshot') {
          this.#protocolError(socket, new ZdsProtocolError('a second SnapshotSent'));
          return;
        }
        this.#phase = 'live';
        const drained = await this.#o.manager.retainOnly(this.#seen);
        if (drained.length > 0) this.#o.log?.info({ scope: 'inpod', drained }, 'pods not in the snapshot drained');
        await this.#ack(socket, '');
        this.#snapshotDone = true;
        this.emit('snapshot');
        return;
      }
    }
  }

  async #ack(socket: SeqpacketSocket, error: string): Promise<void> {
    this.#acked = true;
    try {
      await socket.send(encodeAck(error));
    } catch {
      // The connection is gone; the reconnect replays state.
    }
  }
}
