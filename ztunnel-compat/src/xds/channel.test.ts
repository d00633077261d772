// SPDX-License-Identifier: Apache-2.0
// The xDS control channel's TLS under COMPLIANCE_POLICY=pqc: X25519MLKEM768
// alone, so a server without it is never reached; with OpenSSL's defaults
// the same server completes the handshake.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createServer as createTlsServer } from 'node:tls';
import type { Server } from 'node:tls';
import { TestCa } from '../../../test/doubles/istiod/test-ca.ts';
import { controlClient } from './channel.ts';

let server: Server;
let port = 0;
let handshakes = 0;
let rootPem = '';

before(async () => {
  const ca = await TestCa.create();
  const { certPem, keyPem } = await ca.issueServerCert();
  rootPem = ca.rootPem;
  server = createTlsServer({ cert: certPem, key: keyPem, ecdhCurve: 'X25519:P-256', ALPNProtocols: ['h2'] }, (s) => {
    handshakes++;
    s.destroy();
  });
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve); });
  const a = server.address();
  assert.ok(a !== null && typeof a === 'object');
  port = a.port;
});
after(async () => {
  await new Promise((resolve) => { server.close(resolve); });
});

/** Waits up to 1.5 s for the channel to be ready; the handshakes the server saw meanwhile. */
async function tryReady(pqc: boolean): Promise<number> {
  const before = handshakes;
  const client = controlClient({ address: `https://127.0.0.1:${port}`, root: { kind: 'pem', pem: rootPem }, token: { kind: 'literal', token: 't' }, clusterId: 'Kubernetes', pqc });
  try {
    await new Promise<void>((resolve) => { client.waitForReady(Date.now() + 1500, () => { resolve(); }); });
  } finally {
    client.close();
  }
  return handshakes - before;
}

test('a classical-only server: no handshake under pqc, a handshake with the defaults', async () => {
  assert.equal(await tryReady(true), 0);
  assert.ok(await tryReady(false) > 0);
});
