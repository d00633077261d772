// SPDX-License-Identifier: Apache-2.0
// One pod's DNS listeners: UDP and TCP on its loopback (127.0.0.1 and, with
// IPv6, ::1) at the DNS proxy port, where istio-cni's DNS capture sends the
// pod's port-53 traffic. Created inside the pod's netns, marked like every
// pod-side socket. TCP carries length-prefixed messages (RFC 1035 §4.2.2).
import type dgram from 'node:dgram';
import type net from 'node:net';
import { bindUdp, listenTcp } from '@skein/bpf';

export type DnsHandler = (query: Buffer, protocol: 'udp' | 'tcp') => Promise<Buffer | undefined>;

export interface DnsServerOptions {
  netnsFd: number;
  port: number;
  ipv6: boolean;
  mark: number | undefined;
  reusePort: boolean;
  handle: DnsHandler;
}

/** An idle TCP client is dropped after this (ztunnel's DNS TCP request timeout). */
const TCP_IDLE_MS = 5000;

export interface DnsServer {
  close(): Promise<void>;
}

function serveTcp(socket: net.Socket, handle: DnsHandler): void {
  let buf = Buffer.alloc(0);
  socket.setTimeout(TCP_IDLE_MS, () => { socket.destroy(); });
  socket.on('error', () => undefined);
  socket.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      const query = buf.subarray(2, 2 + buf.readUInt16BE(0));
      buf = buf.subarray(2 + query.length);
      void handle(Buffer.from(query), 'tcp').then((answer) => {
        if (answer === undefined || socket.destroyed) return;
        const len = Buffer.alloc(2);
        len.writeUInt16BE(answer.length);
        socket.write(Buffer.concat([len, answer]));
      }, () => { socket.destroy(); });
    }
  });
}

export async function startDnsServer(o: DnsServerOptions): Promise<DnsServer> {
  const udp: dgram.Socket[] = [];
  const tcp: net.Server[] = [];
  const sockets = new Set<net.Socket>();
  const close = async (): Promise<void> => {
    for (const s of udp) s.close();
    for (const s of sockets) s.destroy();
    await Promise.all(tcp.map((srv) => new Promise<void>((r) => { srv.close(() => { r(); }); })));
  };
  const common = { netns: o.netnsFd, port: o.port, reusePort: o.reusePort, ...(o.mark === undefined ? {} : { mark: o.mark }) };
  try {
    for (const address of o.ipv6 ? ['127.0.0.1', '::1'] : ['127.0.0.1']) {
      try {
        const u = await bindUdp({ ...common, address });
        udp.push(u);
        let open = true;
        u.once('close', () => { open = false; });
        // A send to a client that went away must not take the daemon down.
        u.on('error', () => undefined);
        u.on('message', (query, from) => {
          void o.handle(query, 'udp').then((answer) => {
            // The pod may have left while the upstream was answering.
            if (answer !== undefined && open) u.send(answer, from.port, from.address);
          }, () => undefined);
        });
        tcp.push(await listenTcp({ ...common, address }, (s) => {
          sockets.add(s);
          s.once('close', () => sockets.delete(s));
          serveTcp(s, o.handle);
        }));
      } catch (err) {
        // A pod without IPv6 on its loopback still gets the IPv4 listeners.
        const code = (err as NodeJS.ErrnoException).code;
        if (address === '::1' && (code === 'EADDRNOTAVAIL' || code === 'EAFNOSUPPORT')) continue;
        throw err;
      }
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { close };
}
