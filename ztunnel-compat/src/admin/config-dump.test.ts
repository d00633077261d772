// SPDX-License-Identifier: Apache-2.0
// config_dump's version, config, staticConfig and workloadState against what
// istioctl reads (its configdump api.go, copied by setup), a real ztunnel's
// dump (istioctl's testdata) and ztunnel's own field names (ztunnel-facts.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { configDumpFields, realZtunnelDump } from '../../../test/compat/istio-files.ts';
import { BUILD_INFO_FIELDS, CONFIG_FIELDS, EMPTY_STATIC_CONFIG } from '../../../test/compat/ztunnel-facts.ts';
import { parseConfig } from '../config.ts';
import { ConnectionManager } from '../proxy/connection-manager.ts';
import { ProxyState } from '../state/store.ts';
import { buildInfo, configSection, staticConfigSection, workloadStateEntry } from './config-dump.ts';

const sorted = (xs: Iterable<string>): string[] => [...xs].sort();

test("a workloadState entry has istioctl's WorkloadState shape, connections both ways as a real ztunnel lists them", () => {
  const conns = new ConnectionManager(new ProxyState());
  const untrackIn = conns.register({
    destinationUid: 'Kubernetes//Pod/default/server', request: { source: undefined, sourceIp: '10.0.0.1', destinationIp: '10.0.0.2', destinationPort: 8080 },
    pod: { uid: 'pod-1', view: { src: '10.0.0.1:40000', originalDst: null, actualDst: '10.0.0.2:8080', protocol: 'HBONE' } }, close: () => undefined,
  });
  const untrackOut = conns.registerOutbound('pod-1', { src: '10.0.0.2:41000', originalDst: '10.96.0.1:80', actualDst: '10.0.0.3:15008', protocol: 'HBONE' });
  conns.registerOutbound('pod-2', { src: '10.0.0.9:1', originalDst: '10.96.0.1:80', actualDst: '10.0.0.3:8080', protocol: 'TCP' });
  const entry = workloadStateEntry({ state: 'running', info: { name: 'server', namespace: 'default', serviceAccount: 'web' } }, conns.byPod('pod-1'), 'cluster.local');

  assert.deepEqual(sorted(Object.keys(entry)), sorted(configDumpFields('WorkloadState')));
  const c = entry.connections as { inbound: Record<string, unknown>[]; outbound: Record<string, unknown>[] };
  assert.deepEqual(sorted(Object.keys(c)), sorted(configDumpFields('WorkloadConnections')));
  assert.deepEqual(sorted(Object.keys(c.inbound[0] ?? {})), sorted(configDumpFields('InboundConnection')));
  assert.deepEqual(sorted(Object.keys(c.outbound[0] ?? {})), sorted(configDumpFields('OutboundConnection')));
  assert.deepEqual(sorted(Object.keys(entry.info as object)), sorted(configDumpFields('WorkloadInfo')));
  assert.equal(c.outbound.length, 1, "another pod's connections are not this pod's");

  // The same keys and value kinds a real ztunnel wrote (inbound originalDst may be null).
  const real = Object.values(realZtunnelDump().workloadState as Record<string, { state: string; connections: { inbound: object[]; outbound: object[] } }>);
  const realIn = real.flatMap((w) => w.connections.inbound)[0] ?? {};
  const realOut = real.flatMap((w) => w.connections.outbound)[0] ?? {};
  assert.deepEqual(sorted(Object.keys(c.inbound[0] ?? {})), sorted(Object.keys(realIn)));
  assert.deepEqual(sorted(Object.keys(c.outbound[0] ?? {})), sorted(Object.keys(realOut)));
  assert.ok(real.some((w) => w.state === entry.state), `a real ztunnel's state values include ${String(entry.state)}`);
  assert.deepEqual((realOut as { protocol: string }).protocol, 'HBONE');

  untrackIn();
  untrackOut();
  assert.deepEqual(conns.byPod('pod-1'), { inbound: [], outbound: [] }, 'closed connections leave the list');
});

test("version is ztunnel's BuildInfo and config has every field of ztunnel's Config", () => {
  assert.deepEqual(Object.keys(buildInfo()), [...BUILD_INFO_FIELDS]);
  const c = configSection(parseConfig({ NODE_NAME: 'node0', CLUSTER_ID: 'east', SECRET_TTL: '12h' }));
  for (const f of CONFIG_FIELDS) assert.ok(f in c, `config.${f}`);
  assert.deepEqual([c.clusterId, c.localNode, c.proxyMode, c.secretTtl], ['east', 'node0', 'Shared', { secs: 43_200, nanos: 0 }]);
  for (const port of [15001, 15006, 15008]) assert.ok((c.illegalPorts as number[]).includes(port), `illegal port ${port}`);
});

test("staticConfig: ztunnel's empty LocalConfig without a file, the file's own lists with one", () => {
  assert.deepEqual(staticConfigSection(undefined), EMPTY_STATIC_CONFIG);
  const w = [{ name: 'a', namespace: 'b', workloadIps: ['10.0.0.1'], services: {} }];
  assert.deepEqual(staticConfigSection({ workloads: w }), { workloads: w, policies: [], services: [] });
});

test('config.socketConfig shows the KEEPALIVE_* in force, as ztunnel serializes its SocketConfig', () => {
  assert.deepEqual(configSection(parseConfig({})).socketConfig, {
    keepaliveTime: { secs: 180, nanos: 0 }, keepaliveInterval: { secs: 180, nanos: 0 }, keepaliveRetries: 9, keepaliveEnabled: true, userTimeoutEnabled: false,
  });
  assert.deepEqual(configSection(parseConfig({ KEEPALIVE_TIME: '30s', KEEPALIVE_INTERVAL: '10s', KEEPALIVE_RETRIES: '4', KEEPALIVE_ENABLED: 'false' })).socketConfig, {
    keepaliveTime: { secs: 30, nanos: 0 }, keepaliveInterval: { secs: 10, nanos: 0 }, keepaliveRetries: 4, keepaliveEnabled: false, userTimeoutEnabled: false,
  });
});
