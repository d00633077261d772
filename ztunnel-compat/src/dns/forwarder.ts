// SPDX-License-Identifier: Apache-2.0
// Sends the queries Skein does not answer to the upstream nameservers, from
// inside the asking pod's netns and with the proxy mark: istio-cni's DNS
// capture lets marked packets out (and keeps them in conntrack zone 1)
// instead of sending them back here. UDP queries go up over UDP, TCP ones
// over TCP; the upstream's answer comes back byte for byte.
import net from 'node:net';
import { bindUdp, connectTcp } from '@skein/bpf';

export class UpstreamError extends Error {
  override name = 'UpstreamError';
}

export interface Upstream {
  /** Nameserver IPs, tried in order (port 53). */
  servers: readonly string[];
  mark: number | undefined;
  /** Per nameserver. */
  timeoutMs: number;
}

const PORT = 53;

async function udpOnce(query: Buffer, server: string, netnsFd: number, u: Upstream): Promise<Buffer> {
  const v4 = net.isIPv4(server);
  // A fresh socket (and so a random source port) per query, as a stub resolver does.
  const socket = await bindUdp({ address: v4 ? '0.0.0.0' : '::', port: 0, netns: netnsFd, ...(u.mark === undefined ? {} : { mark: u.mark }) });
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new UpstreamError(`${server}: no answer in ${u.timeoutMs} ms`)); }, u.timeoutMs);
      socket.on('message', (msg, from) => {
        // Only the server asked, with the query's id.
        if (from.port !== PORT || from.address !== server || msg.length < 12 || msg.readUInt16BE(0) !== query.readUInt16BE(0)) return;
        clearTimeout(timer);
        resolve(msg);
      });
      socket.on('error', (err) => { clearTimeout(timer); reject(err); });
      socket.send(query, PORT, server);
    });
  } finally {
    socket.close();
  }
}

async function tcpOnce(query: Buffer, server: string, netnsFd: number, u: Upstream): Promise<Buffer> {
  const socket = connectTcp({ address: server, port: PORT, netns: netnsFd, ...(u.mark === undefined ? {} : { mark: u.mark }) });
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new UpstreamError(`${server}: no answer over TCP in ${u.timeoutMs} ms`)); }, u.timeoutMs);
      let got = Buffer.alloc(0);
      socket.on('data', (d: Buffer) => {
        got = Buffer.concat([got, d]);
        if (got.length < 2 || got.length < 2 + got.readUInt16BE(0)) return;
        clearTimeout(timer);
        resolve(got.subarray(2, 2 + got.readUInt16BE(0)));
      });
      socket.on('error', (err) => { clearTimeout(timer); reject(err); });
      socket.once('end', () => { clearTimeout(timer); reject(new UpstreamError(`${server}: closed before answering`)); });
      const len = Buffer.alloc(2);
      len.writeUInt16BE(query.length);
      socket.write(Buffer.concat([len, query]));
    });
  } finally {
    socket.destroy();
  }
}

/** The first answer from the nameservers in turn; UpstreamError when none answers. */
export async function forward(query: Buffer, protocol: 'udp' | 'tcp', netnsFd: number, u: Upstream): Promise<Buffer> {
  if (u.servers.length === 0) throw new UpstreamError('no nameserver configured');
  const errors: string[] = [];
  for (const server of u.servers) {
    try {
      return await (protocol === 'udp' ? udpOnce : tcpOnce)(query, server, netnsFd, u);
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  throw new UpstreamError(errors.join('; '));
}
