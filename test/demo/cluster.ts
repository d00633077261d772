// SPDX-License-Identifier: Apache-2.0
// The demo's cluster, brought up and torn down: the lab (two node netns, pods
// with istio-cni's in-pod rules), one `skein proxy` process per node in that
// node's netns (static config, built-in CA, logs to a file per node), the ZDS
// side of istio-cni enrolling pods, small HTTP apps in the pods and haproxy as
// the sandwiched waypoint.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { listenTcp } from '@skein/bpf';
import { cleanupKernel } from '@skein/ztunnel-compat/accel/index';
import { startDaemon, type Daemon } from '../bench/daemon.ts';
import { CniDouble } from '../cni/cni-double.ts';
import { Lab, type LabNode, type LabPod } from '../lab/index.ts';
import { APP_PORT, labSpec, meshYaml, PODS, SERVICES, WAYPOINT_TUNNEL_PORT } from './mesh.ts';

const MAIN = fileURLToPath(new URL('../../ztunnel-compat/src/main.ts', import.meta.url));
const HBONE_PORT = 15008;

export interface Cluster {
  lab: Lab;
  nodes: LabNode[];
  pod(name: string): LabPod;
  /** The log file of the Skein daemon on a node (JSON lines). */
  logOf(node: LabNode): string;
  daemons: Daemon[];
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

function haproxyConfig(shopIp: string): string {
  return [
    '# The demo waypoint: PROXY v2 in (identity and service TLVs from Skein), HTTP routing on Host.',
    'global', '  nbthread 1',
    'defaults', '  mode http', '  timeout connect 3s', '  timeout client 10s', '  timeout server 10s',
    'frontend waypoint',
    `  bind 127.0.0.1:${WAYPOINT_TUNNEL_PORT} accept-proxy`,
    '  http-request set-header x-client-src %[src]',
    '  http-response set-header x-waypoint haproxy',
    `  use_backend shop if { hdr(host) -i ${SERVICES.shop.hostname} }`,
    '  http-request return status 404 content-type text/plain string "no route" if !{ hdr(host) -i ' + SERVICES.shop.hostname + ' }',
    'backend shop',
    `  server shop ${shopIp}:${APP_PORT}`,
    '',
  ].join('\n');
}

async function waitFor(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startCluster(log: (line: string) => void): Promise<Cluster> {
  const lab = Lab.create(labSpec());
  const closers: (() => void)[] = [];
  const daemons: Daemon[] = [];
  const cnis: CniDouble[] = [];
  const nodes = lab.nodes;
  const logOf = (n: LabNode): string => path.join(lab.dir, `${n.name}.skein.log`);
  // The daemons' pinned eBPF state, per lab run, removed at teardown.
  const bpffsRoot = `/sys/fs/bpf/skein-lab-${lab.plan.runId}`;
  const bpffsOf = (n: LabNode): string => path.join(bpffsRoot, n.name);
  const cleanupPins = (): void => {
    for (const n of nodes) cleanupKernel(bpffsOf(n));
    fs.rmSync(bpffsRoot, { recursive: true, force: true });
  };
  // Also on Ctrl-C, which leaves through process.exit.
  process.once('exit', cleanupPins);
  const teardown = async (): Promise<void> => {
    for (const c of closers) c();
    await Promise.all(daemons.map((d) => d.stop()));
    process.off('exit', cleanupPins);
    cleanupPins();
    for (const c of cnis) c.close();
    lab.teardown();
  };
  try {
    const pod = (name: string): LabPod => lab.pod(name);
    const mesh = path.join(lab.dir, 'mesh.yaml');
    fs.writeFileSync(mesh, meshYaml((name) => pod(name).ip4));
    // Count what each node forwards to its pods' app and HBONE ports: the
    // proof of which way the bytes went.
    for (const p of lab.pods) {
      for (const port of [APP_PORT, HBONE_PORT]) p.node.run('iptables', '-t', 'mangle', '-A', 'FORWARD', '-d', p.ip4, '-p', 'tcp', '--dport', String(port));
    }
    log('apps: an HTTP app in each pod, haproxy in the waypoint pod');
    for (const p of lab.pods.filter((x) => x.name !== 'waypoint')) closers.push(await startApp(p));
    const cfg = path.join(lab.dir, 'haproxy.cfg');
    fs.writeFileSync(cfg, haproxyConfig(pod('shop').ip4));
    pod('waypoint').spawn('haproxy', ['-db', '-f', cfg], { stdio: 'ignore' });
    await waitFor('haproxy to listen', () => pod('waypoint').run('ss', '-Hltn').includes(`:${WAYPOINT_TUNNEL_PORT}`));

    for (const n of nodes) {
      const cni = new CniDouble(n, CniDouble.socketPathFor(lab.dir, n));
      cnis.push(cni);
      log(`skein proxy on ${n.name} (static config, built-in CA)`);
      // One after the other: the first creates the shared built-in CA.
      daemons.push(await startDaemon(n, {
        cmd: process.execPath, args: [MAIN, 'proxy'], ports: [15021], comm: 'MainThread', timeoutMs: 20_000,
        logPath: logOf(n),
        env: {
          ...process.env, XDS_ADDRESS: '', LOCAL_XDS_PATH: mesh, FAKE_CA: 'true', SKEIN_LOCAL_CA_DIR: path.join(lab.dir, 'ca'),
          NODE_NAME: n.name, INPOD_UDS: cni.zds.path, IPV6_ENABLED: 'false', RUST_LOG: 'info', LOG_FORMAT: 'json',
          SKEIN_BPFFS_DIR: bpffsOf(n),
        },
      }));
      await cni.zds.waitReady(20_000);
    }
    for (const p of PODS.filter((x) => x.enrolled)) {
      const cni = cnis[p.node];
      if (cni === undefined) throw new Error(`no istio-cni double on node${p.node}`);
      await cni.enroll(pod(p.name));
    }
    log(`enrolled ${PODS.filter((p) => p.enrolled).length} pods over ZDS; 'outside' stays out of the mesh`);
    return {
      lab, nodes, pod, logOf, daemons, teardown,
      forwarded: (n, ip, port) => {
        const out = n.run('iptables', '-t', 'mangle', '-L', 'FORWARD', '-v', '-n', '-x');
        const line = out.split('\n').find((l) => l.includes(` ${ip} `) && l.includes(`dpt:${port}`));
        return line === undefined ? 0 : Number(line.trim().split(/\s+/)[0]);
      },
    };
  } catch (e) {
    await teardown();
    throw e;
  }
}
