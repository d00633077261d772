// SPDX-License-Identifier: Apache-2.0
// SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST through a real iptables REDIRECT, the
// way istio-cni sends a pod's outbound TCP to port 15001.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { connectTcp, listenTcp, originalDst } from '../lib/index.ts';
import { needsRoot, suiteNetns } from './netns-fixture.ts';

const ns = suiteNetns((n) => {
  for (const ipt of ['iptables', 'ip6tables']) {
    n.run(ipt, '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '--dport', '9999', '-j', 'REDIRECT', '--to-ports', '15001');
  }
});

for (const [family, loopback] of [['IPv4', '127.0.0.1'], ['IPv6', '::1']] as const) {
  test(`${family}: the accepted socket reports the pre-REDIRECT destination`, { skip: needsRoot }, async () => {
    const accepted = Promise.withResolvers<net.Socket>();
    const server = await listenTcp({ address: loopback, port: 15001, netns: ns().path }, accepted.resolve);
    const client = connectTcp({ address: loopback, port: 9999, netns: ns().path });
    const conn = await accepted.promise;
    assert.deepEqual(originalDst(conn), { address: loopback, port: 9999, family: family === 'IPv4' ? 4 : 6 });
    assert.equal(conn.localPort, 15001, 'the connection really went to the capture port');
    client.destroy();
    conn.destroy();
    server.close();
  });
}
