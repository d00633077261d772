// SPDX-License-Identifier: Apache-2.0
// A pod's capture listeners (reference §4.3), created inside the pod's netns
// through the addon: 15001 outbound, 15006 inbound plaintext, 15008 inbound
// HBONE, and the DNS proxy on the pod's loopback (15053, UDP and TCP);
// marked 0x539 so istio-cni's rules let their traffic through, with
// SO_REUSEPORT so an old and a new node proxy can both hold them. IPv4
// always; IPv6 when enabled and the pod has it.
import type net from 'node:net';
import { closeFd, listenFd, listenTcp, setNetnsSysctl, type ListenOptions, type TcpKeepalive } from '@skein/bpf';
import { startDnsServer, type DnsHandler, type DnsServer } from '../dns/server.ts';
import { carriedEnd, carriedUntil } from '../proxy/carried.ts';
import { ChurnTable } from '../proxy/churn-table.ts';
import type { PodProxy, ProxyFactory } from './manager.ts';
import type { WorkloadInfo } from './protocol.ts';

export const CAPTURE_PORTS = { outbound: 15001, inbound: 15006, hbone: 15008 } as const;
export type CaptureKind = keyof typeof CAPTURE_PORTS;

export interface PodContext {
  uid: string;
  info: WorkloadInfo;
  netnsFd: number;
  /** Tracks a socket that replaced an accepted one (pooled reads): the pod's stop closes it as it would the accepted one. */
  track?: (s: net.Socket) => void;
}

/** What the data path does with a captured connection. */
export type ConnectionHandler = (kind: CaptureKind, socket: net.Socket, pod: PodContext) => void;

/**
 * A connection Node holds no socket for (the native engine accepted it):
 * the pod's stop waits for `until` within its drain, then calls `end`.
 */
export interface HeldConnection {
  until: Promise<void>;
  end: (reason: string) => void;
}

/** Listeners whose connections the native engine accepts itself (pod-proxy: 15001). */
export interface EngineListeners {
  kinds: readonly CaptureKind[];
  /**
   * Starts accepting on `fd` (taking a dup of it); each connection is
   * handed to `hold` before anything else. Until `close()`.
   */
  listen: (kind: CaptureKind, fd: number, pod: PodContext, hold: (c: HeldConnection) => void) => { close: () => void };
}

export interface ListenerOptions {
  mark: number | undefined;
  /**
   * TCP keepalive (KEEPALIVE_*) on the listeners: every accepted pod socket
   * inherits it from its listener, with no setsockopt per connection.
   */
  keepalive: TcpKeepalive | undefined;
  reusePort: boolean;
  ipv6: boolean;
  onConnection: ConnectionHandler;
  /** Replaces an accepted socket before it is tracked and handled (pod-proxy: pooled reads). */
  adopt?: (kind: CaptureKind, socket: net.Socket) => net.Socket;
  /** Kinds the native engine accepts instead of Node. */
  engine?: EngineListeners;
  /** The DNS proxy's port and per-pod handler; absent when DNS capture is off. */
  dns?: { port: number; handlerFor: (pod: PodContext) => DnsHandler };
}

/** How long before the drain deadline a connection still open gets a FIN, to answer with its own (at most half the drain). */
const LINGER_MS = 1000;

class PodListeners implements PodProxy {
  readonly #servers: net.Server[];
  /** Listeners the native engine accepts on. */
  readonly engineListeners: { close: () => void }[] = [];
  /** Sockets Node holds open. */
  readonly #open = new Set<net.Socket>();
  /**
   * Connections the native engine carries (carried.ts): Node's socket is
   * gone, the connection lives until the engine reports its end; each with
   * how to end it, when the engine can.
   */
  readonly #carried = new ChurnTable<{ end: ((reason: string) => void) | undefined }>();
  #changed: (() => void) | undefined;
  dns: DnsServer | undefined;

  constructor(servers: net.Server[]) {
    this.#servers = servers;
  }

  /** A connection the engine accepted: the drain waits for it as for a carried one. */
  hold(c: HeldConnection): void {
    const held = { end: (reason: string) => { c.end(reason); } };
    const key = this.#carried.add(held);
    void c.until.then(() => { this.#carried.delete(key); this.#changed?.(); });
  }

  track(s: net.Socket): void {
    this.#open.add(s);
    s.once('close', () => {
      this.#open.delete(s);
      const until = carriedUntil(s);
      if (until !== undefined) {
        const c = { end: carriedEnd(s) };
        const key = this.#carried.add(c);
        void until.then(() => { this.#carried.delete(key); this.#changed?.(); });
      }
      this.#changed?.();
    });
  }

  /** Resolves once `done()` holds or after `ms`. */
  #until(done: () => boolean, ms: number): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(finish, ms);
      function finish(): void { clearTimeout(timer); resolve(); }
      this.#changed = () => { if (done()) finish(); };
    }).finally(() => { this.#changed = undefined; });
  }

  async stop(drainMs = 0): Promise<void> {
    const closed = this.#servers.map((srv) => new Promise<void>((r) => { srv.close(() => { r(); }); }));
    for (const l of this.engineListeners) l.close();
    if (this.dns !== undefined) closed.push(this.dns.close());
    // Listeners close first: during a handoff the new daemon's listeners
    // (SO_REUSEPORT) take the new connections while these finish.
    if (drainMs > 0) {
      const ended = (): boolean => this.#open.size + this.#carried.size === 0;
      const linger = Math.min(LINGER_MS, drainMs / 2);
      await this.#until(ended, drainMs - linger);
      // Near the deadline each socket Node holds gets a FIN: the pod's
      // answering FIN ends its relay both ways. Closed outright with bytes
      // unread or on the way, it would be reset. Within the deadline, which
      // the pod's termination grace period is sized for.
      for (const s of this.#open) s.end();
      await this.#until(ended, linger);
    }
    for (const s of this.#open) s.destroy();
    // The engine ends what it carries the same way (a FIN, the pod's answer
    // taken), as ztunnel ends a drained proxy's connections.
    const why = drainMs > 0 ? `the drain deadline (${drainMs} ms) passed` : 'the pod left the mesh';
    for (const c of this.#carried.values()) c.end?.(why);
    await Promise.all(closed);
  }
}

/**
 * During a handoff both node proxies hold the pod's listeners (SO_REUSEPORT)
 * and the kernel spreads new connections over them; when the old one closes
 * its listeners, the connections still queued on them would be reset (the
 * resilience scenario's client saw ECONNRESET 1 ms after a SIGTERM). With
 * net.ipv4.tcp_migrate_req=1 (Linux 5.14+, per netns) the kernel moves them
 * to the new proxy's listener instead. Only SO_REUSEPORT listeners in the
 * pod's netns are affected. ztunnel does not set it; best effort: a kernel
 * without it keeps the old behaviour.
 */
function migrateOnClose(netnsFd: number): void {
  try {
    setNetnsSysctl(netnsFd, 'net/ipv4/tcp_migrate_req', '1');
  } catch {
    // ENOENT on older kernels, EACCES/EROFS where /proc/sys is read-only.
  }
}

export function listenerFactory(o: ListenerOptions): ProxyFactory {
  return {
    async start(uid, info, netnsFd) {
      const servers: net.Server[] = [];
      const proxy = new PodListeners(servers);
      const pod: PodContext = { uid, info, netnsFd, track: (s) => { proxy.track(s); } };
      const families: string[] = o.ipv6 ? ['0.0.0.0', '::'] : ['0.0.0.0'];
      if (o.reusePort) migrateOnClose(netnsFd);
      try {
        for (const [kind, port] of Object.entries(CAPTURE_PORTS) as [CaptureKind, number][]) {
          for (const address of families) {
            const lo: ListenOptions = {
              address, port, netns: netnsFd, mark: o.mark, reusePort: o.reusePort, noDelay: true, allowHalfOpen: true,
              ...(o.keepalive === undefined ? {} : { keepalive: o.keepalive }),
            };
            try {
              if (o.engine?.kinds.includes(kind) === true) {
                const fd = listenFd(lo);
                try {
                  proxy.engineListeners.push(o.engine.listen(kind, fd, pod, (c) => { proxy.hold(c); }));
                } finally {
                  closeFd(fd); // the engine holds its own
                }
              } else {
                servers.push(await listenTcp(lo, (accepted) => {
                  let s: net.Socket;
                  try {
                    s = o.adopt?.(kind, accepted) ?? accepted;
                  } catch {
                    accepted.destroy(); // out of fds: refuse this one, keep serving
                    return;
                  }
                  proxy.track(s);
                  o.onConnection(kind, s, pod);
                }));
              }
            } catch (err) {
              // A pod without IPv6 on its interfaces still gets its IPv4 listeners.
              if (address === '::' && ((err as NodeJS.ErrnoException).code === 'EADDRNOTAVAIL' || (err as NodeJS.ErrnoException).code === 'EAFNOSUPPORT')) continue;
              throw err;
            }
          }
        }
        if (o.dns !== undefined) {
          proxy.dns = await startDnsServer({ netnsFd, port: o.dns.port, ipv6: o.ipv6, mark: o.mark, reusePort: o.reusePort, handle: o.dns.handlerFor(pod) });
        }
      } catch (err) {
        await proxy.stop();
        throw err;
      }
      return proxy;
    },
  };
}
