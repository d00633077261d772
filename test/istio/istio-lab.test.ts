// SPDX-License-Identifier: Apache-2.0
// Skein against the real Istio control plane: etcd, kube-apiserver and istiod
// in the lab's control-plane netns, the istio-cni node agent on each node,
// all built from their Go modules by test/setup.sh --control-plane. The lab
// comes up once (under a minute); every test below reads what that run saw. Bounded: the whole file
// has a 15-minute timeout and every wait in the run is bounded.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connectTcp } from '@skein/bpf';
import { missingBinaries } from './binaries.ts';
import { APP_NAMESPACE, APP_PODS, APP_SERVICES } from './cluster.ts';
import { checkKind, type IstioctlCheck } from './istioctl.ts';
import { untilDump } from './dump.ts';
import { DENY_POLICY, runIstioLab, type IstioLabReport } from './run.ts';

interface Seen {
  /** istiod's own count of rejected xDS pushes (pilot_total_xds_rejects, all types). */
  istiodRejects: number;
  /** istioctl `connections` on node1's dump taken while client held a connection to echo open. */
  connections: IstioctlCheck;
  /** The same dump's workloadState for the server pod (what Skein holds). */
  serverState: unknown;
  /** Pods the real istio-cni node agent sent to Skein over ZDS (its "sending pod add to ztunnel" log lines). */
  cniAdds: string[];
  /** Pods annotated ambient.istio.io/redirection=enabled in the API (istio-cni writes it). */
  redirected: string[];
  /** istiod's view of its connected proxies (/debug/adsz): connection id and node metadata. */
  proxies: { id: string; metadata: Record<string, unknown> }[];
}

const skipReason = process.getuid?.() !== 0 ? 'needs root (the lab)' : undefined;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'skein-istio-lab-'));
let report: IstioLabReport | undefined;
let seen: Seen | undefined;

describe('Skein against real istiod and kube-apiserver', { skip: skipReason, timeout: 900_000 }, () => {
  before(async () => {
    // setup.sh --control-plane (npm test runs it) builds these; their absence is a failure, not a skip.
    const missing = missingBinaries();
    if (missing.length > 0) throw new Error(missing.join('; '));
    report = await runIstioLab({
      log: (l) => { process.stderr.write(`# istio-lab: ${l}\n`); },
      outDir: path.join(tmp, 'out'),
      cni: 'istio-cni',
      inspect: async (c) => {
        const cniAdds = c.nodes.flatMap((n) => fs.readFileSync(path.join(c.lab.dir, 'istio-cni', n.name, 'istio-cni.log'), 'utf8').split('\n')
          .filter((l) => l.includes('sending pod add to ztunnel')).map((l) => /\bname=(\S+)/.exec(l)?.[1] ?? ''));
        const pods = await c.cp.kube.core.listNamespacedPod({ namespace: APP_NAMESPACE });
        const redirected = pods.items.filter((p) => p.metadata?.annotations?.['ambient.istio.io/redirection'] === 'enabled').map((p) => p.metadata?.name ?? '');
        const metrics = await c.cp.host.exec(['curl', '-sS', '-m', '5', 'http://127.0.0.1:15014/metrics']);
        const istiodRejects = metrics.split('\n').filter((l) => l.startsWith('pilot_total_xds_rejects')).reduce((n, l) => n + Number(l.split(' ').pop()), 0);
        const proxiesRaw = await c.cp.host.exec(['curl', '-sS', '-m', '5', 'http://127.0.0.1:8080/debug/adsz']);
        const proxies = (JSON.parse(proxiesRaw) as { clients?: { connectionId: string; metadata?: Record<string, unknown> }[] }).clients?.map((x) => ({ id: x.connectionId, metadata: x.metadata ?? {} })) ?? [];
        // A connection held open from client to the echo service, so node1's
        // dump has one inbound connection for istioctl to list.
        const client = c.pod('client');
        const sock = connectTcp({ address: c.vip('echo'), port: APP_SERVICES.echo.port, netns: client.netnsPath });
        await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
        sock.write('GET / HTTP/1.1\r\nHost: echo\r\n'); // no blank line: the request stays open
        try {
          const dump = await untilDump(c, 1, 'an inbound connection', (d) => JSON.stringify(d.workloadState ?? {}).includes(client.ip4), 15_000)
            // If Skein lists no such connection, take the dump as it is (the test then says so).
            .catch(() => untilDump(c, 1, 'a dump', () => true));
          const file = path.join(tmp, 'node1.open.config_dump.json');
          fs.writeFileSync(file, JSON.stringify(dump));
          const states = Object.values((dump.workloadState ?? {}) as Record<string, { info?: { name?: string } }>);
          seen = { istiodRejects, proxies, cniAdds, redirected, connections: await checkKind('connections', file, dump), serverState: states.find((s) => s.info?.name === 'server') };
        } finally {
          sock.destroy();
        }
      },
    });
  }, { timeout: 600_000 }); // the run itself: above the suite's 2-minute default per test
  after(() => { fs.rmSync(tmp, { recursive: true, force: true }); });

  test('istiod pushed every enrolled workload to Skein, and nothing was NACKed (Skein\'s log and istiod\'s pilot_total_xds_rejects)', () => {
    assert.ok(report !== undefined && seen !== undefined);
    assert.ok(report.workloads >= APP_PODS.filter((p) => p.enrolled).length, `workloads: ${report.workloads}`);
    assert.equal(report.nacks, 0);
    assert.equal(seen.istiodRejects, 0);
  });

  test('the real istio-cni node agent enrolled every ambient pod: ZDS Add to Skein, redirection annotation', () => {
    assert.ok(seen !== undefined);
    const want = [...APP_PODS.filter((p) => p.enrolled).map((p) => p.name), 'waypoint'].sort();
    assert.deepEqual([...new Set(seen.cniAdds)].sort(), want);
    assert.deepEqual([...seen.redirected].sort(), want);
  });

  for (const name of ['cross-node', 'same-node', 'denied', 'waypoint']) {
    test(`path ${name}`, () => {
      const p = report?.paths.find((x) => x.path === name);
      assert.ok(p !== undefined, `no ${name} path in the report`);
      assert.ok(p.ok, p.decision);
      if (name === 'denied') assert.match(p.decision, new RegExp(DENY_POLICY));
    });
  }

  for (const kind of ['workload', 'service', 'policy', 'certificate', 'all']) {
    test(`istioctl ztunnel-config ${kind} --file -o json agrees with Skein's dump on every node`, () => {
      const checks = report?.istioctl.checks.filter((c) => c.kind.endsWith(`: ${kind}`)) ?? [];
      assert.equal(checks.length, 2);
      for (const c of checks) assert.ok(c.ok, `${c.kind}: ${c.detail}`);
    });
  }

  // A connection held open during the dump: istioctl must list it as Skein
  // holds it (workloadState.connections, ztunnel's InboundConnection fields).
  test('istioctl ztunnel-config connections lists the open client → server connection, as Skein holds it', () => {
    assert.ok(seen !== undefined);
    assert.ok(seen.connections.ok, seen.connections.detail);
    assert.match(JSON.stringify(seen.serverState), /"inbound":\[\{/, `server's workloadState has no inbound connection: ${JSON.stringify(seen.serverState)}`);
  });

  // What istiod knows of each Skein (what `istioctl proxy-status` lists):
  // one xDS connection per node carrying ztunnel's node metadata (istio/ztunnel
  // src/xds/client.rs node(): NAME, NAMESPACE, INSTANCE_IPS, NODE_NAME, plus
  // the ISTIO_META_* values, CLUSTER_ID among them). ztunnel sends no
  // ISTIO_VERSION, so istiod shows no proxy version for either; istioctl reads
  // no version from a config_dump (its ZtunnelDump has no such field).
  test('istiod holds one connection per Skein with ztunnel\'s node metadata', () => {
    assert.ok(seen !== undefined);
    const ztunnels = seen.proxies.filter((p) => p.id.startsWith('ztunnel-'));
    // istiod names a connection <pod>.<namespace>-<n> from the node id; of the
    // metadata it keeps (pkg/model/proxy.go NodeMetadata) these come from Skein.
    assert.deepEqual(ztunnels.map((z) => [z.id.replace(/-\d+$/, ''), z.metadata.NAMESPACE, z.metadata.NODE_NAME, z.metadata.INSTANCE_IPS, z.metadata.CLUSTER_ID]).sort(), [
      ['ztunnel-node0.istio-system', 'istio-system', 'node0', '172.31.0.10', 'Kubernetes'],
      ['ztunnel-node1.istio-system', 'istio-system', 'node1', '172.31.0.11', 'Kubernetes'],
    ], JSON.stringify(seen.proxies));
  });
});
