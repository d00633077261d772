// SPDX-License-Identifier: Apache-2.0
// Reference path 2: the classic C userspace proxy pair. haproxy on the client
// pod's node takes plain TCP from the pod and carries it over mutual TLS 1.3
// to haproxy on the server pod's node, which forwards plain TCP to the server
// pod: the same two hops, one TLS connection per TCP connection, that a mesh
// node proxy makes, without HBONE's HTTP/2 CONNECT framing.
import fs from 'node:fs';
import path from 'node:path';
import type { LabNode } from '../../lab/index.ts';
import { createCa, issueCert, type TestCa } from '../certs.ts';
import { startDaemon, type Daemon } from '../daemon.ts';
import type { ActivePath, BenchEnv, BenchPath, Endpoint } from '../scenario.ts';

/**
 * The one TLS 1.3 suite both sides allow: AES-GCM, and the suite ztunnel's
 * rustls picks first, so a Skein HBONE path in the same run pays for the same
 * cipher.
 */
export const TLS13_SUITE = 'TLS_AES_256_GCM_SHA384';

/** Per stream: the plain port on the client's node and the TLS port on the server's node. */
const STREAMS = [
  { name: 'http', plain: 15080, tls: 15443 },
  { name: 'bulk', plain: 15201, tls: 15444 },
] as const;

const identity = (node: LabNode): string => `${node.name}.bench.skein`;

function config(lines: readonly string[]): string {
  return [
    '# Written by test/bench/paths/haproxy-tls.ts.',
    'global',
    // One thread per side: a Skein node proxy is one Node.js event loop, so
    // one haproxy thread each keeps the comparison core for core.
    '    nbthread 1',
    '    maxconn 4096',
    `    ssl-default-bind-ciphersuites ${TLS13_SUITE}`,
    `    ssl-default-server-ciphersuites ${TLS13_SUITE}`,
    'defaults',
    '    mode tcp',
    '    timeout connect 5s',
    // Longer than any load run, so no idle connection is cut mid-measurement
    // (iperf3's control connection idles for the whole test).
    '    timeout client 120s',
    '    timeout server 120s',
    ...lines,
    '',
  ].join('\n');
}

/** Client side: plain in, mutual TLS out, the peer's name checked against the CA. */
export function nearConfig(near: LabNode, far: LabNode, ca: TestCa, crt: string): string {
  return config(STREAMS.flatMap((s) => [
    `listen ${s.name}`,
    `    bind ${near.ip4}:${s.plain}`,
    `    server ${far.name} ${far.ip4}:${s.tls} ssl verify required ca-file ${ca.certFile} crt ${crt} verifyhost ${identity(far)} sni str(${identity(far)}) ssl-min-ver TLSv1.3`,
  ]));
}

/** Server side: mutual TLS in (client certificate required), plain out to the server pod. */
export function farConfig(far: LabNode, targets: Record<'http' | 'bulk', Endpoint>, ca: TestCa, crt: string): string {
  return config(STREAMS.flatMap((s) => [
    `listen ${s.name}`,
    `    bind ${far.ip4}:${s.tls} ssl crt ${crt} ca-file ${ca.certFile} verify required ssl-min-ver TLSv1.3`,
    `    server pod ${targets[s.name].host}:${targets[s.name].port}`,
  ]));
}

async function setup(env: BenchEnv): Promise<ActivePath> {
  const near = env.client.node;
  const far = env.server.pod.node;
  if (near === far) throw new Error('haproxy-tls needs the client and server pods on different nodes');
  const dir = path.join(env.lab.dir, 'haproxy-tls');
  const ca = createCa(dir);
  const files = { near: path.join(dir, `${near.name}.cfg`), far: path.join(dir, `${far.name}.cfg`) };
  fs.writeFileSync(files.far, farConfig(far, env.server, ca, issueCert(ca, identity(far))));
  fs.writeFileSync(files.near, nearConfig(near, far, ca, issueCert(ca, identity(near))));

  const started: Daemon[] = [];
  const teardown = async (): Promise<void> => { await Promise.all(started.map((d) => d.stop())); };
  try {
    // -db: foreground, no daemon fork, so the lab tracks the real PID.
    const farProxy = await startDaemon(far, { cmd: 'haproxy', args: ['-db', '-f', files.far], ports: STREAMS.map((s) => s.tls) });
    started.push(farProxy);
    const nearProxy = await startDaemon(near, { cmd: 'haproxy', args: ['-db', '-f', files.near], ports: STREAMS.map((s) => s.plain) });
    started.push(nearProxy);
    return {
      targets: {
        http: { host: near.ip4, port: STREAMS[0].plain },
        bulk: { host: near.ip4, port: STREAMS[1].plain },
      },
      proxies: [
        { name: `haproxy-${near.name}`, pid: nearProxy.pid },
        { name: `haproxy-${far.name}`, pid: farProxy.pid },
      ],
      teardown,
    };
  } catch (e) {
    await teardown();
    throw e;
  }
}

export const haproxyTls: BenchPath = {
  name: 'haproxy-tls',
  description: 'client pod → haproxy (client node) → mutual TLS 1.3 → haproxy (server node) → server pod',
  setup,
};
