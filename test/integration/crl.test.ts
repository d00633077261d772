// SPDX-License-Identifier: Apache-2.0
// CRL_PATH on a live mesh, on each HBONE engine: both daemons read the CRL
// file (as Istio's chart mounts istio-ca-crl), a connection between two
// pods runs, then the CA's CRL revokes the server pod's certificate: the
// client node's daemon reloads it, closes the open connection, refuses new
// ones, and counts them in istio_crl_policy_rejections_total{reporter="source"}.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { CRL_REJECTIONS } from '../compat/ztunnel-facts.ts';
import { needsRoot } from '../skips.ts';
import { must } from './lab-helpers.ts';
import { ask, longLivedClientScript, startMeshLab, sum, type MeshLab } from './mesh-lab.ts';
import { until } from './until.ts';

const skip = needsRoot('lab namespaces, iptables');
const dir = mkdtempSync(path.join(tmpdir(), 'skein-crl-lab-'));
const crlPath = path.join(dir, 'ca-crl.pem');

let mesh: MeshLab | undefined;
const m = (): MeshLab => must(mesh, 'mesh');

after(async () => {
  await mesh?.close();
  rmSync(dir, { recursive: true, force: true });
});

const rejections = async (node: number, reporter: string): Promise<number> =>
  sum(await m().scrape(node), new RegExp(`^${CRL_REJECTIONS.name}\\{reporter="${reporter}"\\}`));

for (const engine of ['native', 'js'] as const) {
  test(`${engine} engine: a CRL revoking the server pod's certificate closes the open connection to it and refuses new ones, counted at the source`, { skip, timeout: 60_000 }, async () => {
    // Nothing revoked yet (an empty file), then the CA's CRL with no entries.
    writeFileSync(crlPath, '');
    mesh = await startMeshLab({
      nodes: [[{ name: 'client' }], [{ name: 'server', serviceAccount: 'server' }]],
      env: { CRL_PATH: crlPath, SKEIN_HBONE_ENGINE: engine },
    });
    try {
      writeFileSync(crlPath, await m().istiod.ca.crl([]));
      await m().cnis[0]?.enroll(m().pod('client'));
      await m().cnis[1]?.enroll(m().pod('server'));
      const client = m().pod('client');
      const server = m().pod('server');
      const first = await ask(client, server.ip4);
      assert.ok(first.ok, first.out);
      assert.match(await m().scrape(0), new RegExp(`^skein_hbone_engine\\{engine="${engine}"\\} 1$`, 'm'));

      const held = client.exec('python3', ['-c', longLivedClientScript(server.ip4, 8080, 30)], { timeoutMs: 45_000 });
      await until('the held connection is open', async () =>
        sum(await m().scrape(1), /^istio_tcp_connections_opened_total\{reporter="destination"[^}]*source_workload="client"/) >= 2, 10_000);

      const serials = m().istiod.issued.filter((c) => c.identity.endsWith('/sa/server')).map((c) => new X509Certificate(must(c.certChain[0], 'leaf')).serialNumber);
      assert.ok(serials.length > 0, 'the server pod got a certificate');
      writeFileSync(crlPath, await m().istiod.ca.crl(serials));

      const out = await held;
      assert.notEqual(out.code, 0, `the held connection was closed: ${out.stdout}${out.stderr}`);
      assert.doesNotMatch(out.stdout, /^OK/);
      assert.ok(await rejections(0, CRL_REJECTIONS.reporter.outbound) >= 1);
      const again = await ask(client, server.ip4);
      assert.equal(again.ok, false, again.out);
      assert.equal(await rejections(1, CRL_REJECTIONS.reporter.inbound), 0, 'the server node refused nobody: the client\'s certificate is good');
    } finally {
      await mesh.close();
      mesh = undefined;
    }
  });
}
