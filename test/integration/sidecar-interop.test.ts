// SPDX-License-Identifier: Apache-2.0
// Ambient ↔ sidecar interop on the lab: a pod outside ambient whose own proxy
// speaks HBONE (a sidecar stand-in; WDS marks it `nativeTunnel`, protocol
// HBONE) is reached from an ambient pod over HBONE to the sidecar's own
// :15008, and reaches an ambient pod by tunnelling straight to Skein's :15008.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { listenTcp } from '@skein/bpf';
import { startApp, type App } from '@skein/ztunnel-compat/app';
import { parseConfig } from '@skein/ztunnel-compat/config';
import { LocalCa } from '@skein/ztunnel-compat/identity/local-ca';
import { createLogger } from '@skein/ztunnel-compat/log';
import { CniDouble } from '../cni/cni-double.ts';
import { HboneSidecar } from '../doubles/sidecar/hbone-sidecar.ts';
import { Lab, type LabNode, type LabPod } from '../lab/index.ts';
import { forwarded, must } from './lab-helpers.ts';

const needsRoot = process.getuid?.() === 0 ? false : 'needs root (lab namespaces, iptables)';
const quiet = createLogger('error', 'json', fs.createWriteStream('/dev/null'));

let lab: Lab | undefined;
let ca: LocalCa | undefined;
let sidecar: HboneSidecar | undefined;
const apps: App[] = [];
const cnis: CniDouble[] = [];
const servers: net.Server[] = [];
/** Client addresses each app saw. */
const seenBy = new Map<string, string[]>();

const pod = (name: string): LabPod => must(lab, 'lab').pod(name);
const node = (i: number): LabNode => must(must(lab, 'lab').nodes[i], `node${i}`);
const id = (sa: string): { trustDomain: string; namespace: string; serviceAccount: string } => ({ trustDomain: 'cluster.local', namespace: 'default', serviceAccount: sa });

async function ask(from: LabPod, ip: string, port: number): Promise<{ ok: boolean; out: string }> {
  const r = await from.exec('bash', ['-c', `exec 3<>/dev/tcp/${ip}/${port} || exit 7; echo ping >&3; head -n1 <&3`], { timeoutMs: 8000 });
  return { ok: r.code === 0 && r.stdout.startsWith('pong'), out: r.stdout + r.stderr };
}

before(async () => {
  if (needsRoot) return;
  lab = Lab.create({ nodes: [
    { pods: [{ name: 'client', serviceAccount: 'client' }] },
    { pods: [{ name: 'server', serviceAccount: 'server' }, { name: 'sidecar', serviceAccount: 'sidecar' }] },
  ] });
  const w = (p: LabPod, extra = ''): string => `- {uid: Kubernetes//Pod/default/${p.name}, name: ${p.name}, namespace: default, trustDomain: cluster.local, serviceAccount: ${p.serviceAccount}, workloadIps: ["${p.ip4}"], protocol: HBONE, node: ${p.node.name}${extra}${extra.includes('services:') ? '' : ', services: {}'}}\n`;
  // The sidecar pod is not enrolled (no istio-cni rules, no Skein listeners in it): its own proxy answers on 15008.
  fs.writeFileSync(path.join(lab.dir, 'mesh.yaml'), `workloads:\n${w(pod('client'))}${w(pod('server'))}${w(pod('sidecar'), ', nativeTunnel: true')}`);
  for (const p of ['server', 'sidecar']) for (const port of [8080, 15008]) node(1).run('iptables', '-t', 'mangle', '-A', 'FORWARD', '-d', pod(p).ip4, '-p', 'tcp', '--dport', String(port));
  // The apps. The sidecar's app listens on all addresses, as apps behind a sidecar do.
  for (const [name, address] of [['server', pod('server').ip4], ['sidecar', '0.0.0.0']] as const) {
    seenBy.set(name, []);
    servers.push(await listenTcp({ address, port: 8080, netns: pod(name).netnsPath }, (s) => {
      seenBy.get(name)?.push(s.remoteAddress ?? '');
      s.once('data', () => { s.end(`pong from ${name}\n`); });
      s.on('error', () => undefined);
    }));
  }
  for (const [i, n] of [node(0), node(1)].entries()) {
    const cni = new CniDouble(n, CniDouble.socketPathFor(lab.dir, n));
    cnis.push(cni);
    apps.push(await startApp(parseConfig({
      XDS_ADDRESS: '', LOCAL_XDS_PATH: path.join(lab.dir, 'mesh.yaml'), FAKE_CA: 'true', SKEIN_LOCAL_CA_DIR: path.join(lab.dir, 'ca'),
      NODE_NAME: `node${i}`, INPOD_UDS: cni.zds.path, IPV6_ENABLED: 'false',
    }), quiet, { ports: { admin: 0, stats: 0, readiness: 0 } }));
    await cni.zds.waitReady();
  }
  await must(cnis[0], 'cni0').enroll(pod('client'));
  await must(cnis[1], 'cni1').enroll(pod('server'));
  // The sidecar's certificate comes from the mesh CA, as istiod would issue it.
  ca = await LocalCa.open({ dir: path.join(lab.dir, 'ca') });
  sidecar = await HboneSidecar.start(pod('sidecar'), await ca.fetch(id('sidecar')));
});

after(async () => {
  await sidecar?.stop();
  for (const a of apps) await a.shutdown({ cleanupKernel: true });
  for (const c of cnis) c.close();
  for (const s of servers) s.close();
  lab?.teardown();
});

test('ambient → sidecar: HBONE to the sidecar\'s own 15008, the sidecar sees the ambient client\'s identity', { skip: needsRoot }, async () => {
  const before = { plain: forwarded(node(1), pod('sidecar').ip4, 8080), hbone: forwarded(node(1), pod('sidecar').ip4, 15008) };
  const r = await ask(pod('client'), pod('sidecar').ip4, 8080);
  assert.ok(r.ok, r.out);
  assert.equal(r.out.trim(), 'pong from sidecar');
  assert.deepEqual(must(sidecar, 'sidecar').calls.at(-1), { peer: 'spiffe://cluster.local/ns/default/sa/client', authority: `${pod('sidecar').ip4}:8080` });
  assert.equal(forwarded(node(1), pod('sidecar').ip4, 8080), before.plain, 'no plaintext to the sidecar pod');
  assert.ok(forwarded(node(1), pod('sidecar').ip4, 15008) > before.hbone, 'HBONE to its 15008');
});

test('sidecar → ambient: straight to Skein\'s 15008 in the destination pod; the app sees the sidecar pod\'s IP', { skip: needsRoot }, async () => {
  const cert = await must(ca, 'ca').fetch(id('sidecar'));
  const answer = await must(sidecar, 'sidecar').call(cert, { ip: pod('server').ip4, port: 8080, identity: id('server') }, 'ping\n');
  assert.equal(answer, 'pong from server\n');
  assert.equal(seenBy.get('server')?.at(-1), pod('sidecar').ip4);
  const metrics = await (await fetch(`http://127.0.0.1:${must(apps[1], 'app1').admin.ports.stats}/metrics`)).text();
  assert.match(metrics, /istio_tcp_connections_opened_total\{reporter="destination"[^}]*source_workload="sidecar"[^}]*source_principal="spiffe:\/\/cluster.local\/ns\/default\/sa\/sidecar"[^}]*destination_workload="server"[^}]*connection_security_policy="mutual_tls"[^}]*\} [1-9]/);
});

test('fail closed: a sidecar presenting another identity than WDS names for it is not sent the traffic', { skip: needsRoot }, async () => {
  await must(sidecar, 'sidecar').stop();
  sidecar = await HboneSidecar.start(pod('sidecar'), await must(ca, 'ca').fetch(id('impostor')));
  const calls = must(sidecar, 'sidecar').calls.length;
  const r = await ask(pod('client'), pod('sidecar').ip4, 8080);
  assert.equal(r.ok, false, r.out);
  assert.equal(must(sidecar, 'sidecar').calls.length, calls, 'no CONNECT reached the impostor');
  const metrics = await (await fetch(`http://127.0.0.1:${must(apps[0], 'app0').admin.ports.stats}/metrics`)).text();
  assert.match(metrics, /istio_tcp_connections_failed_total\{[^}]*destination_workload="sidecar"[^}]*\} [1-9]/);
});
