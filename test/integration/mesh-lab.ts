// SPDX-License-Identifier: Apache-2.0
// A two-node mesh on the lab with istiod in the loop: the istiod double
// (delta ADS and the CA, over gRPC/TLS on loopback), one in-process Skein
// daemon per node that gets its workloads and certificates from it (by
// impersonation, as ztunnel), istio-cni's double enrolling pods over ZDS, and
// an echo server on :8080 in every pod. For the certificate suites.
import fs from 'node:fs';
import type net from 'node:net';
import { listenTcp } from '@skein/bpf';
import { startApp, type App } from '@skein/ztunnel-compat/app';
import { parseConfig } from '@skein/ztunnel-compat/config';
import { createLogger } from '@skein/ztunnel-compat/log';
import { TunnelProtocol } from '@skein/ztunnel-compat/xds/proto';
import { CniDouble } from '../cni/cni-double.ts';
import { IstiodDouble } from '../doubles/istiod/istiod-double.ts';
import { Lab, type LabPod, type PodSpec } from '../lab/index.ts';
import { kernelMode } from './kernel-mode.ts';
import { must } from './lab-helpers.ts';

const quiet = createLogger('error', 'json', fs.createWriteStream('/dev/null'));

export interface MeshLab {
  lab: Lab;
  istiod: IstiodDouble;
  apps: App[];
  cnis: CniDouble[];
  pod(name: string): LabPod;
  /** Tells istiod about the pod (its workload, on its node); the daemons learn it over xDS. */
  publish(p: LabPod): void;
  /** The Prometheus text of node i's daemon. */
  scrape(i: number): Promise<string>;
  close(): Promise<void>;
}

const tokenOf = (i: number): string => `ztunnel-node${i}-token`;

/** 10.244.1.5 -> its 4 bytes, as WDS carries addresses. */
const ipBytes = (ip: string): Buffer => Buffer.from(ip.split('.').map(Number));

/**
 * Builds the mesh. `env` is extra daemon configuration (e.g. SECRET_TTL);
 * pods named in `unpublished` are not told to istiod up front.
 */
export async function startMeshLab(o: { nodes: [PodSpec[], PodSpec[]]; env?: Record<string, string>; unpublished?: string[] }): Promise<MeshLab> {
  const istiod = await IstiodDouble.start({
    tokens: Object.fromEntries([0, 1].map((i) => [tokenOf(i), { namespace: 'istio-system', serviceAccount: 'ztunnel', podName: `ztunnel-${i}`, nodeName: `node${i}` }])),
  });
  const apps: App[] = [];
  const cnis: CniDouble[] = [];
  const servers: net.Server[] = [];
  let lab: Lab | undefined;
  const close = async (): Promise<void> => {
    for (const a of apps) await a.shutdown({ cleanupKernel: true, drainMs: 0 });
    for (const c of cnis) c.close();
    for (const s of servers) s.close();
    await istiod.stop();
    lab?.teardown();
  };
  try {
    lab = Lab.create({ nodes: o.nodes.map((pods) => ({ pods })) });
    const l = lab;
    const pod = (name: string): LabPod => must(l.pods.find((p) => p.name === name), `pod ${name}`);
    const publish = (p: LabPod): void => {
      istiod.pushWorkload({
        uid: `Kubernetes//Pod/${p.namespace}/${p.name}`, name: p.name, namespace: p.namespace, serviceAccount: p.serviceAccount,
        node: p.node.name, addresses: [ipBytes(p.ip4)], tunnelProtocol: TunnelProtocol.HBONE,
      });
    };
    for (const p of l.pods) {
      if (!(o.unpublished ?? []).includes(p.name)) publish(p);
      servers.push(await listenTcp({ address: p.ip4, port: 8080, netns: p.netnsPath, allowHalfOpen: true }, (s) => {
        s.on('error', () => undefined);
        s.pipe(s);
      }));
    }
    for (const [i, n] of l.nodes.entries()) {
      const cni = new CniDouble(n, CniDouble.socketPathFor(l.dir, n));
      cnis.push(cni);
      apps.push(await startApp(parseConfig({
        XDS_ADDRESS: istiod.address, CA_ADDRESS: istiod.address, XDS_ROOT_CA: istiod.rootPem, CA_ROOT_CA: istiod.rootPem,
        AUTH_TOKEN: tokenOf(i), NODE_NAME: n.name, POD_NAME: `ztunnel-${i}`, POD_NAMESPACE: 'istio-system',
        INPOD_UDS: cni.zds.path, IPV6_ENABLED: 'false', SKEIN_KERNEL_FASTPATH: kernelMode(), ...o.env,
      }), quiet, { ports: { admin: 0, stats: 0, readiness: 0 } }));
      await cni.zds.waitReady();
    }
    for (const a of apps) await a.xds?.whenReady();
    return {
      lab: l, istiod, apps, cnis, pod, publish, close,
      scrape: async (i) => (await fetch(`http://127.0.0.1:${must(apps[i], `app${i}`).admin.ports.stats}/metrics`)).text(),
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** One line to `ip`:`port` and back, from a process inside `from`. */
export async function ask(from: LabPod, ip: string, port = 8080): Promise<{ ok: boolean; out: string }> {
  const r = await from.exec('bash', ['-c', `exec 3<>/dev/tcp/${ip}/${port} || exit 7; echo ping >&3; head -n1 <&3`], { timeoutMs: 8000 });
  return { ok: r.code === 0 && r.stdout.trim() === 'ping', out: `${from.name} -> ${ip}: exit ${r.code} ${r.stdout}${r.stderr}` };
}

/**
 * A Python client that holds ONE connection to an echo server for `seconds`,
 * sending a numbered line every 0.5 s and checking each echo; it prints
 * "OK <lines>" at the end, or why it stopped.
 */
export function longLivedClientScript(ip: string, port: number, seconds: number): string {
  return `
import socket, sys, time
s = socket.create_connection(("${ip}", ${port}), timeout=5)
n = 0; end = time.time() + ${seconds}
while time.time() < end:
    msg = b"tick %d\\n" % n
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        d = s.recv(4096)
        if not d:
            print("EOF after", n); sys.exit(1)
        got += d
    if got != msg:
        print("BAD echo", n, got); sys.exit(1)
    n += 1
    time.sleep(0.5)
print("OK", n)`;
}

/** The sum of the samples whose line matches `series` (0 when none does). */
export function sum(text: string, series: RegExp): number {
  return text.split('\n').filter((l) => series.test(l)).reduce((acc, l) => acc + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}
