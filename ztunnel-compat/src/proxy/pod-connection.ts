// SPDX-License-Identifier: Apache-2.0
// The pod's end of a captured outbound connection (15001), as outbound.ts
// decides and acts on it: a socket Node accepted, or a connection the
// native engine accepted and holds parked (NativeHboneClient.listen). The
// decision reads the same facts from either. Acting, a parked connection
// goes into the engine's tunnel without Node ever making a socket for it,
// and becomes a Node socket only when Node relays it itself (plain TCP).
import net from 'node:net';
import { closeFd, originalDst } from '@skein/bpf';
import type { PodContext } from '../inpod/listeners.ts';
import type { AcceptedConnection, NativeHboneClient, NativeTunnel, NativeTunnelRequest } from './hbone/native-client.ts';
import { pooledSocket } from './pooled-reads.ts';

export interface PodConnection {
  readonly srcIp: string;
  readonly srcPort: number;
  /** Where the pod meant to go; throws when the kernel has no NAT entry for it. */
  originalDst(): { address: string; port: number };
  /** Node's socket, reading into pooled buffers, for a relay here. */
  socket(): net.Socket;
  /** Hands the connection to the engine's tunnel; as NativeHboneClient.open. */
  carry(client: NativeHboneClient, req: NativeTunnelRequest): Promise<NativeTunnel>;
  /** Closes it (refused, or its task failed); one the engine carries is the engine's to end. */
  destroy(): void;
}

/** A pod socket Node accepted (the JavaScript path: already reading into pooled buffers). */
export class AcceptedSocket implements PodConnection {
  readonly #socket: net.Socket;

  constructor(accepted: net.Socket) {
    this.#socket = accepted;
    accepted.on('error', () => undefined);
  }

  get srcIp(): string { return this.#socket.remoteAddress ?? ''; }
  get srcPort(): number { return this.#socket.remotePort ?? 0; }
  originalDst(): { address: string; port: number } { return originalDst(this.#socket); }
  socket(): net.Socket { return this.#socket; }

  carry(client: NativeHboneClient, req: NativeTunnelRequest): Promise<NativeTunnel> {
    return client.open(this.#socket, req);
  }

  destroy(): void { this.#socket.destroy(); }
}

/**
 * A connection the engine accepted. It ends, for the pod's listeners (their
 * drain) and istio_tcp_sockets_open, when `until` settles: closed here while
 * parked, Node's socket closed, or the engine done with it.
 */
export class ParkedConnection implements PodConnection {
  readonly srcIp: string;
  readonly srcPort: number;
  readonly until: Promise<void>;
  readonly #client: NativeHboneClient;
  readonly #accepted: AcceptedConnection;
  readonly #pod: PodContext;
  #state: 'parked' | 'node' | 'engine' | 'closed' = 'parked';
  #socket: net.Socket | undefined;
  #end: ((reason: string) => void) | undefined;
  #settle: () => void = () => undefined;

  constructor(client: NativeHboneClient, accepted: AcceptedConnection, pod: PodContext) {
    this.#client = client;
    this.#accepted = accepted;
    this.#pod = pod;
    this.srcIp = accepted.srcIp;
    this.srcPort = accepted.srcPort;
    this.until = new Promise((resolve) => { this.#settle = resolve; });
  }

  originalDst(): { address: string; port: number } {
    const dst = this.#accepted.originalDst;
    if (dst instanceof Error) throw dst;
    return dst;
  }

  socket(): net.Socket {
    if (this.#socket !== undefined) return this.#socket;
    if (this.#state !== 'parked') throw new Error(`the pod connection from ${this.srcIp}:${this.srcPort} is no longer parked (${this.#state})`);
    const fd = this.#client.release(this.#accepted.id);
    const socket = pooledSocket((onread) => new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true, onread }));
    socket.on('error', () => undefined);
    socket.once('close', () => { this.#settle(); });
    this.#pod.track?.(socket);
    this.#state = 'node';
    this.#socket = socket;
    return socket;
  }

  async carry(client: NativeHboneClient, req: NativeTunnelRequest): Promise<NativeTunnel> {
    if (this.#state !== 'parked') throw new Error(`the pod connection from ${this.srcIp}:${this.srcPort} is no longer parked (${this.#state})`);
    // The parked id means something only to the engine that parked it.
    if (client !== this.#client) throw new Error('a parked connection goes only into the tunnels of the engine that accepted it');
    const carried = client.openAccepted(this.#accepted.id, req);
    if (carried.taken) {
      this.#state = 'engine';
      this.#end = carried.end;
      void carried.released.then(() => { this.#settle(); });
    }
    return await carried.tunnel;
  }

  destroy(): void {
    if (this.#state === 'node') this.#socket?.destroy();
    if (this.#state !== 'parked') return;
    this.#state = 'closed';
    try {
      closeFd(this.#client.release(this.#accepted.id));
    } catch {
      // The engine stopped, and closed it.
    }
    this.#settle();
  }

  /** Ends it whatever holds it: the pod left the mesh, or its drain deadline passed. */
  end(reason: string): void {
    if (this.#state === 'engine') this.#end?.(reason);
    else this.destroy();
  }
}
