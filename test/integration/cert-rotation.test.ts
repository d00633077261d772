// SPDX-License-Identifier: Apache-2.0
// Certificate rotation in a live mesh: with SECRET_TTL=20s from the istiod
// double's CA, traffic into and out of pods across nodes keeps working for
// more than three lifetimes (every certificate the mesh started with has
// long expired, and an expired one is never presented), and a connection
// opened before the first rotation still carries bytes after it.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { needsRoot } from '../skips.ts';
import { must } from './lab-helpers.ts';
import { ask, longLivedClientScript, startMeshLab, sum, type MeshLab } from './mesh-lab.ts';
import { until } from './until.ts';

const skip = needsRoot('lab namespaces, iptables');
const TTL_S = 20;

let mesh: MeshLab | undefined;
const m = (): MeshLab => must(mesh, 'mesh');

before(async () => {
  if (skip !== false) return;
  mesh = await startMeshLab({ nodes: [[{ name: 'client' }], [{ name: 'server', serviceAccount: 'server' }]], env: { SECRET_TTL: `${TTL_S}s` } });
  await m().cnis[0]?.enroll(m().pod('client'));
  await m().cnis[1]?.enroll(m().pod('server'));
});
after(async () => {
  await mesh?.close();
});

/** Certificates istiod issued for an identity so far. */
const issuedFor = (sa: string): number => m().istiod.issued.filter((c) => c.identity === `spiffe://cluster.local/ns/default/sa/${sa}`).length;

test('traffic into and out of pods works for 3+ lifetimes of a 20 s certificate; a connection opened before the first rotation still carries bytes after it', { skip, timeout: 150_000 }, async () => {
  const client = m().pod('client');
  const server = m().pod('server');
  await until('both pods have a certificate', () => issuedFor('default') >= 1 && issuedFor('server') >= 1, 15_000);
  // Every certificate issued so far expires within TTL_S from now.
  const firstExpired = Date.now() + TTL_S * 1000;
  const first = { client: issuedFor('default'), server: issuedFor('server') };
  const r0 = await ask(client, server.ip4);
  assert.ok(r0.ok, r0.out);

  // One connection held across rotations (and past the expiry of the certificates it was made with).
  const longLived = client.exec('python3', ['-c', longLivedClientScript(server.ip4, 8080, 2 * TTL_S)], { timeoutMs: (2 * TTL_S + 15) * 1000 });

  const deadline = Date.now() + 3 * TTL_S * 1000 + 5000;
  let rounds = 0;
  while (Date.now() < deadline) {
    const [out, back] = await Promise.all([ask(client, server.ip4), ask(server, client.ip4)]);
    assert.ok(out.ok, `round ${rounds}: ${out.out}`);
    assert.ok(back.ok, `round ${rounds}: ${back.out}`);
    rounds++;
    await new Promise((r) => setTimeout(r, 4000));
  }
  assert.ok(Date.now() > firstExpired + 2 * TTL_S * 1000, 'the first certificates expired two lifetimes ago');
  // Each identity was renewed at least 3 times (about every 10 s: half of what is left of a 20 s certificate).
  assert.ok(issuedFor('default') >= first.client + 3, `client renewals: ${issuedFor('default') - first.client}`);
  assert.ok(issuedFor('server') >= first.server + 3, `server renewals: ${issuedFor('server') - first.server}`);

  const held = await longLived;
  assert.equal(held.code, 0, held.stdout + held.stderr);
  const lines = Number(/^OK (\d+)/m.exec(held.stdout)?.[1] ?? 0);
  assert.ok(lines >= 2 * TTL_S, `the held connection echoed ${lines} lines over ${2 * TTL_S} s`);

  // Nothing was refused for want of a certificate; the daemons counted their renewals.
  for (const i of [0, 1]) {
    const text = await m().scrape(i);
    assert.equal(sum(text, /^skein_certificate_refusals_total/), 0, `node${i} refused a connection`);
    assert.ok(sum(text, /^skein_certificate_fetches_total\{result="ok"\}/) >= 4, `node${i} fetches`);
  }
});
