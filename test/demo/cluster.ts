// SPDX-License-Identifier: Apache-2.0
// The demo's cluster, brought up and torn down: the lab (two node netns, pods
// with istio-cni's in-pod rules), `skein proxy` on each node as the benchmarks
// run it (static config, built-in CA, here with a log file per node), small
// HTTP apps in the pods and haproxy as the sandwiched waypoint.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { listenTcp } from '@skein/bpf';
import { startSkeinNodes } from '../bench/paths/skein-nodes.ts';
import { forwarded, haproxyWaypointConfig } from '../integration/lab-helpers.ts';
import { until } from '../integration/until.ts';
import { Lab, type LabNode, type LabPod } from '../lab/index.ts';
import { APP_PORT, labSpec, meshYaml, PODS, SERVICES, WAYPOINT_TUNNEL_PORT } from './mesh.ts';

const HBONE_PORT = 15008;

export interface Cluster {
  lab: Lab;
  nodes: LabNode[];
  pod(name: string): LabPod;
  /** The log file of the Skein daemon on a node (JSON lines). */
  logOf(node: LabNode): string;
  /** Packets the node forwarded to a pod's port (iptables counters on the FORWARD path). */
  forwarded(node: LabNode, podIp: string, port: number): number;
  teardown(): Promise<void>;
}

/** An app: answers GET /bytes/<n> with n bytes, anything else with who it is and who called. */
async function startApp(p: LabPod): Promise<() => void> {
  const web = http.createServer((req, res) => {
    const n = /^\/bytes\/(\d{1,9})$/.exec(req.url ?? '')?.[1];
    res.setHeader('x-served-by', p.name);
    res.setHeader('x-seen-from', req.socket.remoteAddress ?? '');
    const via = req.headers['x-client-src'];
    if (typeof via === 'string') res.setHeader('x-client-src', via);
    if (n !== undefined) {
      res.setHeader('content-type', 'application/octet-stream');
      res.end(Buffer.alloc(Number(n), 0x61));
      return;
    }
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ pod: p.name, from: req.socket.remoteAddress, xClientSrc: req.headers['x-client-src'] ?? null }));
  });
  const server = await listenTcp({ address: p.ip4, port: APP_PORT, netns: p.netnsPath }, (s) => { web.emit('connection', s); });
  return () => { server.close(); web.close(); };
}

export async function startCluster(log: (line: string) => void): Promise<Cluster> {
  const lab = Lab.create(labSpec());
  const closers: (() => void)[] = [];
  let stopSkein = (): Promise<void> => Promise.resolve();
  const teardown = async (): Promise<void> => {
    for (const c of closers) c();
    await stopSkein();
    lab.teardown();
  };
  try {
    const pod = (name: string): LabPod => lab.pod(name);
    // Count what each node forwards to its pods' app and HBONE ports: the
    // proof of which way the bytes went.
    for (const p of lab.pods) {
      for (const port of [APP_PORT, HBONE_PORT]) p.node.run('iptables', '-t', 'mangle', '-A', 'FORWARD', '-d', p.ip4, '-p', 'tcp', '--dport', String(port));
    }
    log('apps: an HTTP app in each pod, haproxy in the waypoint pod');
    for (const p of lab.pods.filter((x) => x.name !== 'waypoint')) closers.push(await startApp(p));
    const cfg = path.join(lab.dir, 'haproxy.cfg');
    // The demo waypoint: PROXY v2 in (identity and service TLVs from Skein), HTTP routing on Host.
    fs.writeFileSync(cfg, haproxyWaypointConfig({ port: WAYPOINT_TUNNEL_PORT, host: SERVICES.shop.hostname, backend: `${pod('shop').ip4}:${APP_PORT}`, tag: true }));
    pod('waypoint').spawn('haproxy', ['-db', '-f', cfg], { stdio: 'ignore' });
    await until('haproxy to listen', () => pod('waypoint').run('ss', '-Hltn').includes(`:${WAYPOINT_TUNNEL_PORT}`));

    log(`skein proxy on ${lab.nodes.map((n) => n.name).join(' and ')} (static config, built-in CA); pods enrolled over ZDS`);
    const skein = await startSkeinNodes(lab, {
      name: 'demo', nodes: lab.nodes, fastpath: 'auto', logs: true,
      mesh: meshYaml((name) => pod(name).ip4),
      enroll: PODS.filter((p) => p.enrolled).map((p) => pod(p.name)),
    });
    stopSkein = skein.teardown;
    log(`enrolled ${PODS.filter((p) => p.enrolled).length} pods; 'outside' stays out of the mesh`);
    return { lab, nodes: lab.nodes, pod, logOf: skein.logOf, teardown, forwarded };
  } catch (e) {
    await teardown();
    throw e;
  }
}
