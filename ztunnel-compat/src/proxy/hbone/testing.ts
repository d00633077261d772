// SPDX-License-Identifier: Apache-2.0
// Test fixtures for the HBONE tests: real certificates from two local CAs
// (one trusted, one foreign), an echo TCP upstream, and an HboneServer on
// 127.0.0.1 port 0 whose default handler connects to that upstream.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { connect as netConnect, createServer as createNetServer } from 'node:net';
import type { Server as NetServer, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { LocalCa } from '../../identity/local-ca.ts';
import type { CertificateSource, WorkloadCertificate } from '../../identity/certificate.ts';
import type { Identity } from '../../identity/spiffe.ts';
import { HboneServer } from './server.ts';
import type { ConnectDecision, ConnectHandler, ConnectRequest, HboneServerOptions } from './server.ts';

export interface Certs {
  serverId: Identity;
  clientId: Identity;
  server: WorkloadCertificate;
  client: WorkloadCertificate;
  /** Same root, trust domain other.td. */
  otherTrustDomain: WorkloadCertificate;
  /** The client's identity, signed by a root nobody trusts. */
  foreignRoot: WorkloadCertificate;
  /** Another identity in the trusted root, for "unexpected server" tests. */
  stranger: WorkloadCertificate;
  /** The server's namespace and account with an empty trust domain (a ztunnel static-config workload). */
  emptyTrustDomain: WorkloadCertificate;
}

let cached: Promise<Certs> | undefined;

export function certs(): Promise<Certs> {
  cached ??= (async () => {
    const [ca, foreign] = await Promise.all([LocalCa.generate(), LocalCa.generate()]);
    const serverId = { trustDomain: 'cluster.local', namespace: 'server-ns', serviceAccount: 'server-sa' };
    const clientId = { trustDomain: 'cluster.local', namespace: 'client-ns', serviceAccount: 'client-sa' };
    const [server, client, otherTrustDomain, foreignRoot, stranger, emptyTrustDomain] = await Promise.all([
      ca.fetch(serverId),
      ca.fetch(clientId),
      ca.fetch({ trustDomain: 'other.td', namespace: 'client-ns', serviceAccount: 'client-sa' }),
      foreign.fetch(clientId),
      ca.fetch({ trustDomain: 'cluster.local', namespace: 'evil', serviceAccount: 'mallory' }),
      ca.fetch({ ...serverId, trustDomain: '' }),
    ]);
    return { serverId, clientId, server, client, otherTrustDomain, foreignRoot, stranger, emptyTrustDomain };
  })();
  return cached;
}

export interface Echo {
  port: number;
  server: NetServer;
  close(): Promise<void>;
}

/** A TCP echo server on 127.0.0.1:0 that honours half-close (FIN after echoing everything). */
export async function echoServer(): Promise<Echo> {
  const sockets = new Set<Socket>();
  const server = createNetServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => { /* the client may reset */ });
    s.pipe(s);
  });
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve); });
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no address');
  return {
    port: addr.port,
    server,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => { resolve(); });
    }),
  };
}

export interface PatternSource {
  port: number;
  /** The bytes each connection gets: byte i is i % 251. */
  pattern: Buffer;
  close(): void;
}

/**
 * An upstream on 127.0.0.1:0 in another process (python3), so that this
 * process's event loop is not what paces it: it sends `size` bytes of a
 * known pattern to each connection, then closes.
 */
export async function patternSource(size: number): Promise<PatternSource> {
  const child = spawn('python3', ['-c', `
import socket, threading
data = bytes(i % 251 for i in range(${size}))
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(16)
print(l.getsockname()[1], flush=True)
def serve(c):
    c.sendall(data); c.close()
while True:
    c, _ = l.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
`], { stdio: ['ignore', 'pipe', 'inherit'] });
  const close = (): void => { child.kill('SIGKILL'); };
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.once('data', (d: Buffer) => { resolve(Number(d.toString().trim())); });
    child.once('exit', () => { reject(new Error('the pattern source exited')); });
  }).catch((e: unknown) => { close(); throw e; });
  const pattern = Buffer.alloc(size);
  for (let i = 0; i < size; i++) pattern[i] = i % 251;
  return { port, pattern, close };
}

/** Connects to 127.0.0.1:port and resolves once connected; a failure is a 503, as ztunnel. */
export function connectUpstream(port: number): Promise<Exclude<ConnectDecision, { dialed: true }>> {
  return new Promise((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port, allowHalfOpen: true });
    s.once('connect', () => { resolve({ status: 200, upstream: s }); });
    s.once('error', (err) => { resolve({ status: 503, reason: err.message }); });
  });
}

export interface Harness {
  server: HboneServer;
  port: number;
  echo: Echo;
  requests: ConnectRequest[];
  close(): Promise<void>;
}

export async function startServer(cert: WorkloadCertificate | CertificateSource, opts: Partial<HboneServerOptions> & { handler?: ConnectHandler } = {}): Promise<Harness> {
  const echo = await echoServer();
  const requests: ConnectRequest[] = [];
  const handler: ConnectHandler = opts.handler ?? (() => connectUpstream(echo.port));
  const server = new HboneServer(cert, {
    ...opts,
    handler: (req) => {
      requests.push(req);
      return handler(req);
    },
  });
  const { port } = await server.listen({ port: 0, host: '127.0.0.1' });
  return {
    server,
    port,
    echo,
    requests,
    close: async () => {
      await server.close();
      await echo.close();
    },
  };
}

/** Writes `data` with backpressure, ends, and resolves with the SHA-256 and byte count of everything read back. */
export async function roundTrip(t: Duplex, data: Buffer): Promise<{ hash: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  const read = new Promise<void>((resolve, reject) => {
    t.on('data', (chunk: Buffer) => { hash.update(chunk); bytes += chunk.length; });
    t.once('end', resolve);
    t.once('error', reject);
  });
  const CHUNK = 64 * 1024;
  for (let off = 0; off < data.length; off += CHUNK) {
    if (!t.write(data.subarray(off, off + CHUNK))) await new Promise((r) => t.once('drain', r));
  }
  t.end();
  await read;
  return { hash: hash.digest('hex'), bytes };
}
