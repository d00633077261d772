// SPDX-License-Identifier: Apache-2.0
// `:authority` parsing, the request-header helpers, and the PING keepalive
// (both sides drop a session whose peer stops answering).
import assert from 'node:assert/strict';
import { createServer as createH2Server } from 'node:http2';
import type { ServerHttp2Session, Settings } from 'node:http2';
import { connect as netConnect, createServer as createNetServer } from 'node:net';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import { createServer as createTlsServer } from 'node:tls';
import { HboneClient } from './client.ts';
import { CLIENT_MAX_HEADER_LIST, CONNECTION_WINDOW, MAX_FRAME, parseAuthority, STREAM_WINDOW } from './h2.ts';
import { BAGGAGE_KEYS } from '../../../../test/compat/ztunnel-facts.ts';
import { ProxyState } from '../../state/store.ts';
import { pod, workloadResource } from '../../state/testing.ts';
import { ProxyStateUpdater } from '../../state/updater.ts';
import { baggageHeader, forwardedHeader, forwardedHost, sourceBaggage, traceparent } from './headers.ts';
import { serverContext } from './tls.ts';
import { certs, startServer } from './testing.ts';

test('parseAuthority accepts ip:port, [v6]:port and hostname:port only', () => {
  assert.deepEqual(parseAuthority('10.1.2.3:8080'), { kind: 'ip', host: '10.1.2.3', port: 8080 });
  assert.deepEqual(parseAuthority('[2001:db8::1]:443'), { kind: 'ip', host: '2001:db8::1', port: 443 });
  assert.deepEqual(parseAuthority('reviews.default.svc.cluster.local:9080'), { kind: 'hostname', host: 'reviews.default.svc.cluster.local', port: 9080 });
  for (const bad of [undefined, '', '10.1.2.3', ':80', '10.1.2.3:', '10.1.2.3:0', '10.1.2.3:65536', '10.1.2.3:8o', '2001:db8::1:443',
    '[2001:db8::1]443', '[10.0.0.1]:80', '[nope]:80', '999.1.1.1:80', '1.2.3:80', 'a_b:80', 'host name:80', '-a:80', 'a/b:80']) {
    assert.equal(parseAuthority(bad), undefined, String(bad));
  }
});

test('baggage leaves out empty parts and lower-cases the workload type', () => {
  assert.equal(baggageHeader({
    clusterId: 'Kubernetes', namespace: 'default', workloadType: 'Deployment', workloadName: 'reviews-v1',
    canonicalName: 'reviews', canonicalRevision: 'v1', region: 'eu', zone: 'eu-1a',
  }), 'k8s.cluster.name=Kubernetes,k8s.namespace.name=default,k8s.deployment.name=reviews-v1,service.name=reviews,service.version=v1,cloud.region=eu,cloud.availability_zone=eu-1a');
  assert.equal(baggageHeader({ namespace: 'ns', workloadType: 'pod', workloadName: '', canonicalName: 'x' }), 'k8s.namespace.name=ns,service.name=x');
  assert.equal(baggageHeader({}), '');
});

test("a source's baggage: the node's CLUSTER_ID, not the workload's cluster, and the workload's region and zone, in ztunnel's keys and order", () => {
  const s = new ProxyState();
  new ProxyStateUpdater(s).addressHandler.handle([workloadResource(pod('reviews-v1-abc', 'default', '10.0.0.1', {
    clusterId: 'workload-cluster', workloadType: 1, workloadName: 'reviews-v1', canonicalName: 'reviews', canonicalRevision: 'v1',
    locality: { region: 'eu-west', zone: 'eu-west-1a', subzone: 'rack1' },
  }))], []);
  const w = s.workloads.byAddress('', '10.0.0.1');
  assert.ok(w !== undefined);
  const parts = sourceBaggage(w, 'node-cluster').split(',').map((p) => p.split('='));
  assert.deepEqual(parts.map(([k]) => k), BAGGAGE_KEYS.map((k) => k.replace('<type>', w.workloadType.toLowerCase())));
  assert.deepEqual(Object.fromEntries(parts), {
    'k8s.cluster.name': 'node-cluster', 'k8s.namespace.name': 'default', [`k8s.${w.workloadType.toLowerCase()}.name`]: 'reviews-v1',
    'service.name': 'reviews', 'service.version': 'v1', 'cloud.region': 'eu-west', 'cloud.availability_zone': 'eu-west-1a',
  });
});

test("the Forwarded header's host= is the service the client addressed", () => {
  assert.equal(forwardedHost({ forwarded: 'for="10.0.0.1:1234";host=reviews.default.svc.cluster.local' }), 'reviews.default.svc.cluster.local');
  assert.equal(forwardedHost({ forwarded: 'for="10.0.0.1:1234"' }), undefined);
  assert.equal(forwardedHost({}), undefined);
});

test('a Forwarded host= that is empty once unquoted is no host (fuzz finding, test/fuzz hbone-connect)', () => {
  // The input the fuzzer saved: its authority part, a NUL, then this Forwarded value.
  assert.equal(forwardedHost({ forwarded: 'host="' }), undefined);
  assert.equal(forwardedHost({ forwarded: 'for="10.0.0.1:1";host=""' }), undefined);
  assert.equal(forwardedHost({ forwarded: 'host="";host="echo.default"' }), 'echo.default');
});

test('forwarded and traceparent follow ztunnel', () => {
  assert.equal(forwardedHeader('10.0.0.1', 1234), 'for="10.0.0.1:1234"');
  assert.equal(forwardedHeader('fd00::1', 1234, 'reviews.default.svc.cluster.local'), 'for="[fd00::1]:1234";host=reviews.default.svc.cluster.local');
  // Past several refills of the random pool: every one well formed and new.
  const seen = new Set<string>();
  for (let i = 0; i < 1000; i++) {
    const t = traceparent();
    assert.match(t, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    seen.add(t.slice(3, 35)).add(t.slice(36, 52));
  }
  assert.equal(seen.size, 2000);
});

test('PING keepalive: both sides drop a session whose peer stops answering', async () => {
  const c = await certs();
  const ka = { intervalMs: 30, timeoutMs: 120 };
  const h = await startServer(c.server, { keepalive: ka });
  // A TCP relay between client and server that can be frozen (a black hole).
  let frozen = false;
  let relayed = 0;
  const pairs: Socket[] = [];
  const relay = createNetServer((down) => {
    const up = netConnect({ host: '127.0.0.1', port: h.port });
    pairs.push(down, up);
    for (const [from, to] of [[down, up], [up, down]] as const) {
      from.on('data', (d: Buffer) => {
        if (frozen) return;
        relayed += d.length;
        to.write(d);
      });
      from.on('error', () => undefined);
      from.on('close', () => to.destroy());
    }
  });
  await new Promise<void>((r) => { relay.listen(0, '127.0.0.1', r); });
  const addr = relay.address();
  assert.ok(addr !== null && typeof addr === 'object');
  const client = new HboneClient({ keepalive: ka });
  try {
    const t = await client.connect({ cert: c.client, expected: [c.serverId], upstream: { ip: '127.0.0.1', port: addr.port }, authority: `127.0.0.1:${h.echo.port}` });
    t.on('error', () => undefined);
    const before = relayed;
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(relayed > before, 'PINGs flow while the tunnel is idle');
    assert.equal(client.sessionCount, 1);
    assert.equal(h.server.sessionCount, 1);
    frozen = true;
    await waitFor(() => client.sessionCount === 0 && h.server.sessionCount === 0, 2000);
  } finally {
    await client.close();
    for (const s of pairs) s.destroy();
    await new Promise<void>((r) => { relay.close(() => { r(); }); });
    await h.close();
  }
});

test('the client sends ztunnel\'s HTTP/2 settings and a 16 MiB connection window', async () => {
  const c = await certs();
  const h2 = createH2Server();
  let got: { settings: Settings; window: number } | undefined;
  h2.on('session', (session: ServerHttp2Session) => {
    session.once('remoteSettings', (settings: Settings) => {
      setTimeout(() => { got = { settings, window: session.state.remoteWindowSize ?? 0 }; }, 50);
    });
  });
  h2.on('stream', (stream) => { stream.respond({ ':status': 200 }); stream.end(); });
  const srv = createTlsServer(serverContext(c.server).options, (s) => { h2.emit('connection', s); });
  await new Promise<void>((r) => { srv.listen(0, '127.0.0.1', r); });
  const addr = srv.address();
  assert.ok(addr !== null && typeof addr === 'object');
  const client = new HboneClient();
  try {
    const t = await client.connect({ cert: c.client, expected: [c.serverId], upstream: { ip: '127.0.0.1', port: addr.port }, authority: '127.0.0.1:1' });
    t.resume();
    await waitFor(() => got !== undefined);
    assert.ok(got);
    assert.equal(got.settings.enablePush, false);
    assert.equal(got.settings.initialWindowSize, STREAM_WINDOW);
    assert.equal(got.settings.maxFrameSize, MAX_FRAME);
    assert.equal(got.settings.maxHeaderListSize, CLIENT_MAX_HEADER_LIST);
    assert.equal(got.window, CONNECTION_WINDOW);
  } finally {
    await client.close();
    await new Promise<void>((r) => { srv.close(() => { r(); }); });
  }
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}
