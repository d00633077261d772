// SPDX-License-Identifier: Apache-2.0
// Small things the lab suites share: reading the proof of where packets
// went (iptables counters), and a bulk peer that checks bytes both ways.
import type { LabNode, LabPod } from '../lab/index.ts';

export function must<T>(x: T | undefined, what: string): T {
  if (x === undefined) throw new Error(`${what} missing`);
  return x;
}

/** Packets a node forwarded to ip:port (a counting rule in mangle FORWARD, added by the suite); -1 without one. */
export function forwarded(n: LabNode, ip: string, port: number): number {
  const out = n.run('iptables', '-t', 'mangle', '-L', 'FORWARD', '-v', '-n', '-x');
  const line = out.split('\n').find((l) => l.includes(` ${ip} `) && l.includes(`dpt:${port}`));
  return line === undefined ? -1 : Number(line.trim().split(/\s+/)[0]);
}

/** Packets istio-cni's rules in a pod redirected to one of Skein's capture ports; -1 without such a rule. */
export function captured(p: LabPod, chain: 'ISTIO_OUTPUT' | 'ISTIO_PRERT', port: number): number {
  const out = p.run('iptables', '-t', 'nat', '-L', chain, '-v', '-n', '-x');
  const line = out.split('\n').find((l) => l.includes(`redir ports ${port}`));
  return line === undefined ? -1 : Number(line.trim().split(/\s+/)[0]);
}

/**
 * A Python bulk peer for a pod: hashes what each connection sends until its
 * half-close, then answers with the hash, a newline and 8 MiB derived from
 * the byte count (see bulkClientScript).
 */
export function bulkPeerScript(ip: string, port: number): string {
  return `
import socket, hashlib
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); srv.bind(("${ip}", ${port})); srv.listen(8)
while True:
    c, _ = srv.accept(); h = hashlib.sha256(); n = 0
    while True:
        d = c.recv(1 << 16)
        if not d: break
        h.update(d); n += len(d)
    c.sendall(h.hexdigest().encode() + b"\\n" + hashlib.sha256(str(n).encode()).digest() * (1 << 18)); c.close()
`;
}

/** Sends 32 MiB (paced over ~2 s when asked) to a bulk peer and prints "True True True" when both directions arrived intact. */
export function bulkClientScript(ip: string, port: number, paced: boolean): string {
  return `
import socket, hashlib, os, time
data = os.urandom(32 << 20); s = socket.create_connection(("${ip}", ${port}))
for i in range(0, len(data), 1 << 20):
    s.sendall(data[i:i + (1 << 20)])
    ${paced ? 'time.sleep(0.05)' : 'pass'}
s.shutdown(socket.SHUT_WR); f = s.makefile("rb"); got = f.readline().strip().decode(); back = f.read()
print(got == hashlib.sha256(data).hexdigest(), len(back) == 32 * (1 << 18), back == hashlib.sha256(str(len(data)).encode()).digest() * (1 << 18))`;
}

/**
 * haproxy standing in for a sandwiched waypoint's Envoy: PROXY v2 in on
 * 127.0.0.1:`port` (the source it carries becomes `x-client-src`), HTTP
 * routed on Host to one backend, 404 for any other host. With `tag`, every
 * response says `x-waypoint: haproxy`.
 */
export function haproxyWaypointConfig(o: { port: number; host: string; backend: string; tag?: boolean }): string {
  return [
    'global', '  nbthread 1',
    'defaults', '  mode http', '  timeout connect 3s', '  timeout client 10s', '  timeout server 10s',
    'frontend waypoint',
    `  bind 127.0.0.1:${o.port} accept-proxy`,
    '  http-request set-header x-client-src %[src]',
    ...(o.tag === true ? ['  http-response set-header x-waypoint haproxy'] : []),
    `  use_backend app if { hdr(host) -i ${o.host} }`,
    `  http-request return status 404 content-type text/plain string "no route" if !{ hdr(host) -i ${o.host} }`,
    'backend app',
    `  server app ${o.backend}`,
    '',
  ].join('\n');
}
