// SPDX-License-Identifier: Apache-2.0
// TRANSPARENT_NETWORK_POLICIES on a live two-node mesh: the client node's
// daemon dials HBONE to the server pod's own port (8080) instead of 15008,
// so a network-policy engine sees the app's port on the wire. Upstream
// istio-cni has no rule to steer such a connection to 15008; Calico's
// (Felix marks the tunnel's packets with a DSCP, Tigera's istio-cni
// redirects that DSCP to 15008, MAGIC_DSCP_MARK, default 23) is stood in
// for by two rules this test adds: a DSCP mark on the client pod's packets
// carrying Skein's mark (1337), and a REDIRECT of that DSCP in the server pod.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type { LabPod } from '../lab/index.ts';
import { needsRoot } from '../skips.ts';
import { must } from './lab-helpers.ts';
import { ask, startMeshLab, type MeshLab } from './mesh-lab.ts';

const skip = needsRoot('lab namespaces, iptables');
const DSCP = '23';
let mesh: MeshLab | undefined;
const m = (): MeshLab => must(mesh, 'mesh');

after(async () => {
  await mesh?.close();
});

/** The packets the stand-in for Tigera's rule redirected to 15008 in `p`. */
function steered(p: LabPod): number {
  const out = p.run('iptables', '-t', 'nat', '-L', 'PREROUTING', '-v', '-n', '-x');
  const line = out.split('\n').find((l) => l.includes('redir ports 15008') && l.includes('DSCP match'));
  return line === undefined ? -1 : Number(line.trim().split(/\s+/)[0]);
}

const cases = [{ transparent: true, engine: 'native' }, { transparent: true, engine: 'js' }, { transparent: false, engine: 'native' }] as const;
for (const { transparent, engine } of cases) {
  test(`${engine} engine, TRANSPARENT_NETWORK_POLICIES=${String(transparent)}: HBONE to the server pod dials ${transparent ? 'its port 8080' : '15008'}, and the connection works`, { skip, timeout: 60_000 }, async () => {
    mesh = await startMeshLab({
      nodes: [[{ name: 'client' }], [{ name: 'server', serviceAccount: 'server' }]],
      env: { TRANSPARENT_NETWORK_POLICIES: String(transparent), SKEIN_HBONE_ENGINE: engine },
    });
    try {
      const client = m().pod('client');
      const server = m().pod('server');
      await m().cnis[0]?.enroll(client);
      await m().cnis[1]?.enroll(server);
      client.run('iptables', '-t', 'mangle', '-A', 'OUTPUT', '-p', 'tcp', '--dport', '8080', '-m', 'mark', '--mark', '0x539/0xfff', '-j', 'DSCP', '--set-dscp', DSCP);
      server.run('iptables', '-t', 'nat', '-I', 'PREROUTING', '1', '-p', 'tcp', '--dport', '8080', '-m', 'dscp', '--dscp', DSCP, '-j', 'REDIRECT', '--to-ports', '15008');
      const r = await ask(client, server.ip4);
      assert.ok(r.ok, r.out);
      const n = steered(server);
      if (transparent) assert.ok(n > 0, `the tunnel came to port 8080 and was steered to 15008 (${n} packets)`);
      else assert.equal(n, 0, 'the tunnel went to 15008 itself');
      // Either way it was HBONE, seen by the server node's daemon as mTLS.
      const scraped = await m().scrape(1);
      assert.match(scraped, /^istio_tcp_connections_opened_total\{reporter="destination"[^}]*source_workload="client"[^}]*connection_security_policy="mutual_tls"/m);
    } finally {
      await mesh.close();
      mesh = undefined;
    }
  });
}
