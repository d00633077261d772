// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { createLogger } from '../log.ts';
import { serviceResource, ip } from '../state/testing.ts';
import { ProxyState } from '../state/store.ts';
import { ProxyStateUpdater } from '../state/updater.ts';
import { DnsMetrics } from './metrics.ts';
import { DnsProxy } from './proxy.ts';

function proxyWith(...services: Parameters<typeof serviceResource>[0][]): DnsProxy {
  return proxyPreferring(undefined, ...services);
}

function proxyPreferring(preferredNamespace: string | undefined, ...services: Parameters<typeof serviceResource>[0][]): DnsProxy {
  const state = new ProxyState();
  assert.deepEqual(new ProxyStateUpdater(state).addressHandler.handle(services.map((s) => serviceResource(s)), []), []);
  return new DnsProxy({
    state, metrics: new DnsMetrics(new Registry()), log: createLogger('error', 'json', fs.createWriteStream('/dev/null')),
    clusterDomain: 'cluster.local', ipv6: true, mark: undefined, resolvConf: '/nonexistent', preferredNamespace,
  });
}

test('a namespace-local ServiceEntry resolves only in its namespace; the client\'s own namespace wins', () => {
  const d = proxyWith(
    { name: 'api', namespace: 'team-a', hostname: 'api.example.com', addresses: [{ address: ip('240.240.0.1') }], visibility: 1 },
    { name: 'api', namespace: 'team-b', hostname: 'api.example.com', addresses: [{ address: ip('240.240.0.2') }] },
  );
  assert.deepEqual(d.find('api.example.com', 'team-a'), { v4: ['240.240.0.1'], v6: [] });
  assert.deepEqual(d.find('api.example.com', 'team-b'), { v4: ['240.240.0.2'], v6: [] });
  assert.deepEqual(d.find('api.example.com', 'team-c'), { v4: ['240.240.0.2'], v6: [] }, 'team-a\'s local entry is not visible here');
});

test('a service without a VIP (headless) is left to the upstream', () => {
  const d = proxyWith({ name: 'db', namespace: 'ns', hostname: 'db.ns.svc.cluster.local', addresses: [] });
  assert.equal(d.find('db.ns.svc.cluster.local', 'ns'), undefined);
  assert.equal(d.find('db', 'ns'), undefined);
});

test('PREFERED_SERVICE_NAMESPACE: after the client\'s own namespace, the preferred one wins among same-named services', () => {
  const services = [
    { name: 'api', namespace: 'team-a', hostname: 'api.example.com', addresses: [{ address: ip('240.240.0.1') }] },
    { name: 'api', namespace: 'shared', hostname: 'api.example.com', addresses: [{ address: ip('240.240.0.3') }] },
  ];
  assert.deepEqual(proxyWith(...services).find('api.example.com', 'team-c'), { v4: ['240.240.0.1'], v6: [] }, 'without it, the first');
  const d = proxyPreferring('shared', ...services);
  assert.deepEqual(d.find('api.example.com', 'team-c'), { v4: ['240.240.0.3'], v6: [] });
  assert.deepEqual(d.find('api.example.com', 'team-a'), { v4: ['240.240.0.1'], v6: [] }, 'the client\'s own namespace first');
});
