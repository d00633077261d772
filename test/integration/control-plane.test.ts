// SPDX-License-Identifier: Apache-2.0
// The daemon's control plane end to end, in-process against the istiod double
// (real gRPC over TLS): snapshot, partial NACK, removals, reconnect with
// resource versions, certificates with impersonation, readiness, static mode,
// and startup errors. Admin, stats and readiness servers on ephemeral ports.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startApp, type App } from '@skein/ztunnel-compat/app';
import { parseConfig } from '@skein/ztunnel-compat/config';
import { createLogger } from '@skein/ztunnel-compat/log';
import { ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, TunnelProtocol } from '@skein/ztunnel-compat/xds/proto';
import { ZdsServer } from '../cni/zds-server.ts';
import { IstiodDouble } from '../doubles/istiod/istiod-double.ts';
import { until } from './until.ts';

const TOKEN = 'ztunnel-sa-token';
const quiet = createLogger('error', 'json', fs.createWriteStream('/dev/null'));
let dir: string;
// In shared mode readiness also waits for istio-cni's first snapshot: an
// istio-cni double with no pods answers it.
let cni: ZdsServer;
let INPOD_UDS: string;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skein-cp-'));
  INPOD_UDS = path.join(dir, 'ztunnel.sock');
  cni = new ZdsServer(INPOD_UDS);
});
after(() => {
  cni.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function get(port: number, p: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${p}`);
  return { status: res.status, body: await res.text() };
}

function ip(...b: number[]): Buffer {
  return Buffer.from(b);
}

describe('against the istiod double', () => {
  let istiod: IstiodDouble;
  let app: App;
  const dump = async (): Promise<Record<string, unknown[]>> => JSON.parse((await get(app.admin.ports.admin, '/config_dump')).body) as Record<string, unknown[]>;
  const uids = async (): Promise<string[]> => ((await dump()).workloads as { uid: string }[]).map((w) => w.uid);

  before(async () => {
    istiod = await IstiodDouble.start({
      tokens: { [TOKEN]: { namespace: 'istio-system', serviceAccount: 'ztunnel', podName: 'ztunnel-x', nodeName: 'node-a' } },
    });
    istiod.pushWorkload({ uid: 'Kubernetes//Pod/default/sleep', name: 'sleep', namespace: 'default', serviceAccount: 'sleep', node: 'node-a', addresses: [ip(10, 244, 0, 10)], tunnelProtocol: TunnelProtocol.HBONE, services: { 'default/echo.default.svc.cluster.local': { ports: [{ servicePort: 80, targetPort: 8080 }] } } });
    istiod.pushWorkload({ uid: 'Kubernetes//Pod/default/echo', name: 'echo', namespace: 'default', serviceAccount: 'echo', node: 'node-b', addresses: [ip(10, 244, 1, 10)], tunnelProtocol: TunnelProtocol.HBONE });
    istiod.pushService({ name: 'echo', namespace: 'default', hostname: 'echo.default.svc.cluster.local', addresses: [{ network: '', address: ip(10, 96, 0, 10) }], ports: [{ servicePort: 80, targetPort: 8080 }] });
    istiod.push(AUTHORIZATION_TYPE_URL, 'default/allow-sleep', { name: 'allow-sleep', namespace: 'default', scope: 1, action: 0, rules: [{ clauses: [{ matches: [{ principals: [{ exact: 'cluster.local/ns/default/sa/sleep' }] }] }] }] });
    const config = parseConfig({
      XDS_ADDRESS: `127.0.0.1:${istiod.port}`, CA_ADDRESS: `127.0.0.1:${istiod.port}`,
      XDS_ROOT_CA: istiod.rootPem, CA_ROOT_CA: istiod.rootPem, AUTH_TOKEN: TOKEN,
      NODE_NAME: 'node-a', POD_NAME: 'ztunnel-x', POD_NAMESPACE: 'istio-system', INSTANCE_IP: '172.31.0.10', INPOD_UDS,
    });
    app = await startApp(config, quiet, { ports: { admin: 0, stats: 0, readiness: 0 } });
  });
  after(async () => {
    await app.shutdown({ cleanupKernel: true });
    await istiod.stop();
  });

  test('readiness waits for the first configuration, then config_dump shows it', async () => {
    await app.xds?.whenReady();
    await until('ZDS snapshot', () => app.zds?.snapshotReceived === true);
    const ready = await get(app.admin.ports.readiness, '/healthz/ready');
    assert.deepEqual(ready, { status: 200, body: 'ready\n' });
    const d = await dump();
    assert.deepEqual((d.workloads as { uid: string }[]).map((w) => w.uid), ['Kubernetes//Pod/default/echo', 'Kubernetes//Pod/default/sleep']);
    assert.deepEqual((d.services as { hostname: string; vips: string[] }[]).map((s) => [s.hostname, s.vips]), [['echo.default.svc.cluster.local', ['/10.96.0.10']]]);
    assert.deepEqual((d.policies as { name: string }[]).map((p) => p.name), ['allow-sleep']);
    for (const key of ['workloads', 'services', 'policies', 'stagedServices', 'certificates', 'workloadState', 'config', 'version']) assert.ok(key in d, key);
    assert.equal(istiod.lastNode?.id, 'ztunnel~172.31.0.10~ztunnel-x.istio-system~istio-system.svc.cluster.local');
  });

  test('a bad resource is NACKed by name; the good ones and the last good state stay', async () => {
    const since = istiod.events.length;
    istiod.pushWorkload({ uid: 'Kubernetes//Pod/default/legacy', name: 'legacy', namespace: 'default', tunnelProtocol: TunnelProtocol.LEGACY_ISTIO_MTLS });
    const nack = await istiod.waitForNack({ typeUrl: ADDRESS_TYPE_URL }, { since });
    assert.match(nack.message ?? '', /^Kubernetes\/\/Pod\/default\/legacy: .*LEGACY_ISTIO_MTLS/);
    // A bad update of a known workload keeps its previous version.
    const s2 = istiod.events.length;
    istiod.pushWorkload({ uid: 'Kubernetes//Pod/default/echo', name: 'echo', namespace: 'default', addresses: [ip(1, 2, 3)] });
    assert.match((await istiod.waitForNack({ typeUrl: ADDRESS_TYPE_URL }, { since: s2 })).message ?? '', /echo/);
    assert.deepEqual(await uids(), ['Kubernetes//Pod/default/echo', 'Kubernetes//Pod/default/sleep']);
    const echo = ((await dump()).workloads as { uid: string; workloadIps: string[] }[]).find((w) => w.uid.endsWith('/echo'));
    assert.deepEqual(echo?.workloadIps, ['10.244.1.10']);
    istiod.remove(ADDRESS_TYPE_URL, 'Kubernetes//Pod/default/legacy');
    istiod.pushWorkload({ uid: 'Kubernetes//Pod/default/echo', name: 'echo', namespace: 'default', serviceAccount: 'echo', node: 'node-b', addresses: [ip(10, 244, 1, 10)], tunnelProtocol: TunnelProtocol.HBONE });
  });

  test('removals take resources out', async () => {
    const since = istiod.events.length;
    istiod.pushWorkload({ uid: 'Kubernetes//Pod/default/tmp', name: 'tmp', namespace: 'default', addresses: [ip(10, 244, 1, 99)] });
    await istiod.waitForAck({ typeUrl: ADDRESS_TYPE_URL }, { since });
    assert.ok((await uids()).includes('Kubernetes//Pod/default/tmp'));
    const s2 = istiod.events.length;
    istiod.remove(ADDRESS_TYPE_URL, 'Kubernetes//Pod/default/tmp');
    await istiod.waitForAck({ typeUrl: ADDRESS_TYPE_URL }, { since: s2 });
    assert.ok(!(await uids()).includes('Kubernetes//Pod/default/tmp'));
  });

  test('after a reconnect only what changed is sent again (initial_resource_versions)', async () => {
    const sentBefore = istiod.sent.length;
    const since = istiod.events.length;
    istiod.killStreams();
    await istiod.waitForAck({ typeUrl: ADDRESS_TYPE_URL }, { since });
    await istiod.waitForAck({ typeUrl: AUTHORIZATION_TYPE_URL }, { since });
    const resent = istiod.sent.slice(sentBefore).flatMap((s) => s.names);
    assert.deepEqual(resent, []);
    assert.equal((await get(app.admin.ports.readiness, '/healthz/ready')).status, 200);
  });

  test('a node-local HBONE workload gets a certificate by impersonation; it goes when the workload goes', async () => {
    await until('sleep certificate', () => app.secrets.certificates().some((c) => c.identity === 'spiffe://cluster.local/ns/default/sa/sleep' && c.state === 'Available'));
    const issued = istiod.issued.find((c) => c.identity === 'spiffe://cluster.local/ns/default/sa/sleep');
    assert.ok(issued?.impersonated, 'requested with ImpersonatedIdentity');
    assert.ok(!app.secrets.certificates().some((c) => c.identity.endsWith('/sa/echo')), 'no certificate for a workload on another node');
    const certs = (await dump()).certificates as { identity: string; certChain: { pem: string; expirationTime: string }[] }[];
    const sleep = certs.find((c) => c.identity.endsWith('/sa/sleep'));
    assert.ok(sleep && sleep.certChain.length > 0 && Buffer.from(sleep.certChain[0]?.pem ?? '', 'base64').toString().startsWith('-----BEGIN CERTIFICATE-----'));
    istiod.remove(ADDRESS_TYPE_URL, 'Kubernetes//Pod/default/sleep');
    await until('sleep certificate dropped', () => !app.secrets.certificates().some((c) => c.identity.endsWith('/sa/sleep')));
  });

  test('istiod going away keeps the last state and readiness; it comes back by itself', async () => {
    const before = await uids();
    await istiod.stop();
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(await uids(), before);
    assert.equal((await get(app.admin.ports.readiness, '/healthz/ready')).status, 200);
    const since = istiod.events.length;
    await istiod.restart();
    await istiod.waitForAck({ typeUrl: ADDRESS_TYPE_URL }, { since, timeoutMs: 20_000 });
    const m = (await get(app.admin.ports.stats, '/metrics')).body;
    assert.match(m, /istio_xds_connection_terminations_total\{reason="[A-Za-z]+"\} [1-9]/);
    assert.match(m, /istio_xds_message_total\{url="type.googleapis.com\/istio.workload.Address"\} [1-9]/);
  });
});

test('impersonation is refused for an identity istiod has on no pod of this node', async () => {
  const istiod = await IstiodDouble.start({ tokens: { [TOKEN]: { namespace: 'istio-system', serviceAccount: 'ztunnel', podName: 'z', nodeName: 'node-a' } } });
  // The daemon believes it is node-b, so it tracks node-b's workloads; istiod
  // knows the caller runs on node-a and refuses.
  istiod.pushWorkload({ uid: 'Kubernetes//Pod/default/b', name: 'b', namespace: 'default', serviceAccount: 'bee', node: 'node-b', addresses: [ip(10, 0, 0, 2)], tunnelProtocol: TunnelProtocol.HBONE });
  const app = await startApp(parseConfig({
    XDS_ADDRESS: `127.0.0.1:${istiod.port}`, CA_ADDRESS: `127.0.0.1:${istiod.port}`, XDS_ROOT_CA: istiod.rootPem, CA_ROOT_CA: istiod.rootPem,
    AUTH_TOKEN: TOKEN, NODE_NAME: 'node-b', POD_NAME: 'z', POD_NAMESPACE: 'istio-system', INPOD_UDS,
  }), quiet, { ports: { admin: 0, stats: 0, readiness: 0 } });
  try {
    await until('refused certificate', () => app.secrets.certificates().some((c) => c.identity.endsWith('/sa/bee') && /^Unavailable: .*impersonation/.test(c.state)));
    assert.ok(istiod.log.some((l) => /impersonation/.test(l)), istiod.log.join('\n'));
    assert.ok(!istiod.issued.some((c) => c.identity.endsWith('/sa/bee')));
  } finally {
    await app.shutdown({ cleanupKernel: true });
    await istiod.stop();
  }
});

test('static mode: LOCAL_XDS_PATH and the built-in CA, no istiod', async () => {
  const file = path.join(dir, 'local.yaml');
  fs.writeFileSync(file, `workloads:
- uid: cluster1//Pod/default/local
  name: local
  namespace: default
  trustDomain: cluster.local
  workloadIps: ["10.244.0.10"]
  protocol: HBONE
  node: node0
  services: {}
services:
- {name: echo, namespace: default, hostname: echo.default.svc.cluster.local, vips: ["/10.96.0.10"], ports: {80: 8080}}
policies:
- {name: deny-all, namespace: default, scope: Namespace, action: Deny, rules: [[[{notPrincipals: [{Presence: null}]}]]]}
`);
  const app = await startApp(parseConfig({ XDS_ADDRESS: '', LOCAL_XDS_PATH: file, FAKE_CA: 'true', SKEIN_LOCAL_CA_DIR: path.join(dir, 'ca'), NODE_NAME: 'node0', INPOD_UDS }), quiet, { ports: { admin: 0, stats: 0, readiness: 0 } });
  try {
    await until('ZDS snapshot', () => app.zds?.snapshotReceived === true);
    assert.equal((await get(app.admin.ports.readiness, '/healthz/ready')).status, 200);
    const d = JSON.parse((await get(app.admin.ports.admin, '/config_dump')).body) as Record<string, { uid?: string; hostname?: string; name?: string }[]>;
    assert.deepEqual(d.workloads?.map((w) => w.uid), ['cluster1//Pod/default/local']);
    assert.deepEqual(d.services?.map((s) => s.hostname), ['echo.default.svc.cluster.local']);
    assert.deepEqual(d.policies?.map((p) => p.name), ['deny-all']);
    assert.match((await get(app.admin.ports.stats, '/stats/prometheus')).body, /istio_build\{component="ztunnel",tag="[^"]+"\} 1/);
    await until('local certificate', () => app.secrets.certificates().some((c) => c.identity === 'spiffe://cluster.local/ns/default/sa/default' && c.state === 'Available'));
    assert.ok(fs.existsSync(path.join(dir, 'ca', 'root-cert.pem')), 'the local root was generated');
    const lvl = await fetch(`http://127.0.0.1:${app.admin.ports.admin}/logging?level=debug`, { method: 'POST' });
    assert.equal(await lvl.text(), 'current log level is debug\n');
    assert.equal((await fetch(`http://127.0.0.1:${app.admin.ports.admin}/logging?level=loud`, { method: 'POST' })).status, 400);
    // istioctl ztunnel-config log: an empty level only shows; per-target levels change one scope.
    const logging = async (arg: string): Promise<[number, string]> => {
      const r = await fetch(`http://127.0.0.1:${app.admin.ports.admin}/logging?level=${arg}`, { method: 'POST' });
      return [r.status, await r.text()];
    };
    assert.deepEqual(await logging(''), [200, 'current log level is debug\n']);
    assert.deepEqual(await logging('info,access:debug'), [200, 'current log level is info (access:debug)\n']);
    assert.equal((await logging('nosuchscope:debug'))[0], 400);
    assert.deepEqual(await logging('accel:debug'), [200, 'current log level is info (accel:debug,access:debug)\n'], 'a scope only calls on the root name');
    assert.deepEqual(await logging('info'), [200, 'current log level is info (accel:debug,access:debug)\n'], 'a bare level keeps each scope\'s own, as ztunnel\'s set_level');
    assert.deepEqual(await logging('warn&reset'), [200, 'current log level is warn\n'], 'reset starts again from RUST_LOG\'s');
  } finally {
    await app.shutdown({ cleanupKernel: true });
  }
});

test('bad static config and unreadable files stop the start with a clear message', async () => {
  const bad = path.join(dir, 'bad.yaml');
  fs.writeFileSync(bad, 'workloads:\n- {name: x, namespace: default, trustDomain: cluster.local, workloadIps: ["10.0.0.1"], protocl: TCP, services: {}}\n');
  await assert.rejects(startApp(parseConfig({ XDS_ADDRESS: '', LOCAL_XDS_PATH: bad, FAKE_CA: 'true', SKEIN_LOCAL_CA_DIR: path.join(dir, 'ca2') }), quiet, { ports: { admin: 0, stats: 0, readiness: 0 } }),
    /workloads\[0\]: unknown field 'protocl'/);
  await assert.rejects(startApp(parseConfig({ XDS_ADDRESS: '127.0.0.1:1', AUTH_TOKEN: '/nonexistent/istio-token', XDS_ROOT_CA: '/nonexistent/root-cert.pem', FAKE_CA: 'true' }), quiet),
    (e: Error) => /\/nonexistent\/root-cert.pem/.test(e.message) && /\/nonexistent\/istio-token/.test(e.message));
});
