// SPDX-License-Identifier: Apache-2.0
// The istio-cni side of ZDS, as a test double speaking the real protocol
// (istio cni/pkg/nodeagent/ztunnelserver.go; reference §4.1-4.2):
//   - listen on a SOCK_SEQPACKET path (stale file removed first), at most
//     5 accepted connections per second;
//   - per connection: wait for ZdsHello, replay the pod cache as Add (with
//     the netns fd) or Keep, then SnapshotSent — each message acked before the
//     next, 5 s deadline;
//   - afterwards Add/Del one at a time, Del to every connection;
//   - anything the proxy sends unasked, or a late/garbled ack, is a protocol
//     error: logged, and the connection is closed.
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import { openNetns, SeqpacketServer, SeqpacketSocket } from '@skein/bpf';
import {
  decodeAck,
  decodeHello,
  encodeRequest,
  ZDS_MAX_MESSAGE,
  ZDS_V1,
  type WorkloadInfo,
  type WorkloadRequest,
} from '@skein/ztunnel-compat/inpod/protocol';

export interface ZdsPod {
  uid: string;
  info: WorkloadInfo;
  /** The pod's netns; without one the pod is replayed as Keep. */
  netnsPath?: string;
}

export interface ZdsLogEntry {
  conn: number;
  dir: 'sent' | 'recv' | 'error';
  what: string;
}

export class ZdsProtocolError extends Error {
  override name = 'ZdsProtocolError';
}

export interface ZdsServerOptions {
  /** Ack / Hello deadline (istio-cni: 5 s). */
  deadlineMs?: number;
  /** Accepted connections per second (istio-cni: 5). */
  acceptsPerSecond?: number;
}

/** One node proxy's connection. */
class ZdsConnection {
  readonly id: number;
  readonly socket: SeqpacketSocket;
  state: 'hello' | 'snapshot' | 'ready' | 'closed' = 'hello';
  #waiter: { resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  #chain: Promise<unknown> = Promise.resolve();

  constructor(id: number, socket: SeqpacketSocket) {
    this.id = id;
    this.socket = socket;
  }

  /** Next message from the proxy, within the deadline. */
  next(deadlineMs: number, what: string): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiter = undefined;
        reject(new ZdsProtocolError(`no ${what} within ${deadlineMs} ms`));
      }, deadlineMs);
      this.#waiter = {
        resolve: (b) => { clearTimeout(timer); resolve(b); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      };
    });
  }

  /** Delivers a message; false if nobody was waiting (unsolicited). */
  deliver(data: Buffer): boolean {
    const w = this.#waiter;
    if (w === undefined) return false;
    this.#waiter = undefined;
    w.resolve(data);
    return true;
  }

  fail(err: Error): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.reject(err);
  }

  /** Runs exchanges one at a time, as istio-cni does per connection. */
  serialize<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#chain.then(fn, fn);
    this.#chain = p.catch(() => undefined);
    return p;
  }
}

/**
 * Events: 'ready' (connId) once a proxy acked SnapshotSent; 'closed' (connId);
 * 'protocolError' (Error).
 */
export class ZdsServer extends EventEmitter {
  readonly path: string;
  readonly log: ZdsLogEntry[] = [];
  readonly #server: SeqpacketServer;
  readonly #pods = new Map<string, ZdsPod>();
  readonly #conns = new Set<ZdsConnection>();
  readonly #deadlineMs: number;
  readonly #acceptsPerSecond: number;
  #accepts: number[] = [];
  #nextId = 1;

  constructor(path: string, options: ZdsServerOptions = {}) {
    super();
    this.path = path;
    this.#deadlineMs = options.deadlineMs ?? 5000;
    this.#acceptsPerSecond = options.acceptsPerSecond ?? 5;
    fs.rmSync(path, { force: true });
    this.#server = new SeqpacketServer(path, { maxMessageSize: ZDS_MAX_MESSAGE });
    this.#server.on('connection', (s: SeqpacketSocket) => { this.#accept(s); });
  }

  /** Connections that finished their snapshot. */
  get readyConnections(): number {
    return [...this.#conns].filter((c) => c.state === 'ready').length;
  }

  get connections(): number {
    return this.#conns.size;
  }

  /** Resolves when some connection has acked SnapshotSent. */
  waitReady(timeoutMs = 10_000): Promise<number> {
    const ready = [...this.#conns].find((c) => c.state === 'ready');
    if (ready !== undefined) return Promise.resolve(ready.id);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.off('ready', onReady); reject(new Error(`no proxy finished the ZDS snapshot within ${timeoutMs} ms`)); }, timeoutMs);
      const onReady = (id: number): void => { clearTimeout(timer); resolve(id); };
      this.once('ready', onReady);
    });
  }

  /**
   * Adds (or re-adds) a pod: cached for future snapshots and sent as Add to
   * every ready connection. Resolves with each connection's ack error ('' =
   * ok); rejects if a connection breaks the protocol.
   */
  async addPod(pod: ZdsPod): Promise<string[]> {
    this.#pods.set(pod.uid, pod);
    if (pod.netnsPath === undefined) return [];
    const netnsPath = pod.netnsPath;
    const ready = [...this.#conns].filter((c) => c.state === 'ready');
    return Promise.all(ready.map((c) => c.serialize(() => this.#sendAdd(c, { ...pod, netnsPath }))));
  }

  /** Removes a pod: dropped from the cache, Del sent to every ready connection. */
  async removePod(uid: string): Promise<string[]> {
    this.#pods.delete(uid);
    const ready = [...this.#conns].filter((c) => c.state === 'ready');
    return Promise.all(ready.map((c) => c.serialize(() => this.#exchange(c, { kind: 'del', uid }))));
  }

  /** Sends raw bytes (and optionally an fd) to every connection: for bad-input tests. */
  async sendRaw(data: Buffer, fd?: number): Promise<string[]> {
    return Promise.all([...this.#conns].filter((c) => c.state !== 'closed').map((c) => c.serialize(async () => {
      this.#record(c, 'sent', `raw ${data.length} bytes${fd === undefined ? '' : ' +fd'}`);
      await c.socket.send(data, fd);
      return this.#ack(c);
    })));
  }

  /** Closes every connection (the CNI agent restarting) but keeps listening. */
  dropConnections(): void {
    for (const c of this.#conns) this.#close(c);
  }

  close(): void {
    this.dropConnections();
    this.#server.close();
  }

  #accept(socket: SeqpacketSocket): void {
    const now = Date.now();
    this.#accepts = this.#accepts.filter((t) => now - t < 1000);
    const conn = new ZdsConnection(this.#nextId++, socket);
    if (this.#accepts.length >= this.#acceptsPerSecond) {
      this.#record(conn, 'error', 'accept rate limit exceeded; closing');
      socket.close();
      return;
    }
    this.#accepts.push(now);
    this.#conns.add(conn);
    socket.on('message', (data: Buffer, fd: number | undefined) => {
      if (fd !== undefined) {
        fs.closeSync(fd);
        this.#protocolError(conn, new ZdsProtocolError('the proxy sent an fd'));
        return;
      }
      if (!conn.deliver(data)) this.#protocolError(conn, new ZdsProtocolError(`unsolicited message from the proxy (${data.length} bytes)`));
    });
    socket.on('error', (err: Error) => { this.#protocolError(conn, err); });
    socket.on('close', () => { this.#close(conn); });
    void conn.serialize(() => this.#handshake(conn)).catch((err: unknown) => { this.#protocolError(conn, err as Error); });
  }

  async #handshake(c: ZdsConnection): Promise<void> {
    const hello = decodeHello(await c.next(this.#deadlineMs, 'ZdsHello'));
    this.#record(c, 'recv', `hello v${hello.version}`);
    if (hello.version !== ZDS_V1) throw new ZdsProtocolError(`unsupported ZDS version ${hello.version}`);
    c.state = 'snapshot';
    for (const pod of this.#pods.values()) {
      const err = pod.netnsPath === undefined
        ? await this.#exchange(c, { kind: 'keep', uid: pod.uid })
        : await this.#sendAdd(c, { ...pod, netnsPath: pod.netnsPath });
      if (err !== '') this.#record(c, 'error', `snapshot ${pod.uid}: ${err}`);
    }
    const err = await this.#exchange(c, { kind: 'snapshotSent' });
    if (err !== '') throw new ZdsProtocolError(`SnapshotSent nacked: ${err}`);
    c.state = 'ready';
    this.emit('ready', c.id);
  }

  async #sendAdd(c: ZdsConnection, pod: ZdsPod & { netnsPath: string }): Promise<string> {
    const fd = openNetns(pod.netnsPath);
    try {
      return await this.#exchange(c, { kind: 'add', uid: pod.uid, workloadInfo: pod.info }, fd);
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Sends one request and waits for its ack; returns the ack's error text. */
  async #exchange(c: ZdsConnection, req: WorkloadRequest, fd?: number): Promise<string> {
    if (c.state === 'closed') throw new ZdsProtocolError('connection closed');
    this.#record(c, 'sent', req.kind === 'snapshotSent' ? 'snapshotSent' : `${req.kind} ${req.uid}`);
    const reply = c.next(this.#deadlineMs, `ack for ${req.kind}`);
    await c.socket.send(encodeRequest(req), fd);
    return this.#ackFrom(c, await reply);
  }

  async #ack(c: ZdsConnection): Promise<string> {
    return this.#ackFrom(c, await c.next(this.#deadlineMs, 'ack'));
  }

  #ackFrom(c: ZdsConnection, buf: Buffer): string {
    const { error } = decodeAck(buf);
    this.#record(c, 'recv', error === '' ? 'ack' : `ack error: ${error}`);
    return error;
  }

  #protocolError(c: ZdsConnection, err: Error): void {
    if (c.state === 'closed') return;
    this.#record(c, 'error', err.message);
    c.fail(err);
    this.emit('protocolError', err);
    this.#close(c);
  }

  #close(c: ZdsConnection): void {
    if (c.state === 'closed') return;
    c.state = 'closed';
    c.fail(new ZdsProtocolError('connection closed'));
    this.#conns.delete(c);
    c.socket.close();
    this.emit('closed', c.id);
  }

  #record(c: ZdsConnection, dir: ZdsLogEntry['dir'], what: string): void {
    this.log.push({ conn: c.id, dir, what });
  }
}
