// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, parseConfig, SKEIN_VARS } from './config.ts';
import { parseDurationMs } from './config/duration.ts';
import { capturesInSources } from './source-testing.ts';

test('defaults match ztunnel outside a cluster', () => {
  const c = parseConfig({});
  assert.equal(c.xdsAddress, 'https://localhost:15012');
  assert.equal(c.caAddress, 'https://localhost:15012');
  assert.deepEqual(c.xdsRootCa, { kind: 'file', path: './var/run/secrets/istio/root-cert.pem' });
  assert.deepEqual(c.authToken, { kind: 'file', path: './var/run/secrets/tokens/istio-token' });
  assert.equal(c.clusterId, 'Kubernetes');
  assert.equal(c.proxyMode, 'shared');
  assert.equal(c.packetMark, 1337);
  assert.equal(c.inpodUds, '/var/run/ztunnel/ztunnel.sock');
  assert.equal(c.secretTtlSeconds, 86400);
  assert.equal(c.adminPort, 15000);
  assert.equal(c.statsPort, 15020);
  assert.equal(c.readinessPort, 15021);
  assert.equal(c.localCa, false);
});

test('in a cluster istiod is the default, and a schemeless address gets https', () => {
  assert.equal(parseConfig({ KUBERNETES_SERVICE_HOST: '10.0.0.1' }).xdsAddress, 'https://istiod.istio-system.svc:15012');
  assert.equal(parseConfig({ XDS_ADDRESS: 'istiod-rev.istio-system.svc:15012' }).xdsAddress, 'https://istiod-rev.istio-system.svc:15012');
});

test('ISTIO_META_CLUSTER_ID wins over CLUSTER_ID; metadata and headers are collected', () => {
  const c = parseConfig({
    CLUSTER_ID: 'c1', ISTIO_META_CLUSTER_ID: 'c2', ISTIO_META_DNS_CAPTURE: 'true', ISTIO_METAJSON_LABELS: '{"a":"b"}',
    XDS_HEADER_X_TENANT: 't1', CA_HEADER_FOO: 'bar',
  });
  assert.equal(c.clusterId, 'c2');
  assert.equal(c.istioMeta.CLUSTER_ID, 'c2');
  assert.equal(c.istioMeta.DNS_CAPTURE, 'true');
  assert.deepEqual(c.istioMetaJson.LABELS, { a: 'b' });
  assert.deepEqual(c.xdsHeaders, { x_tenant: 't1' });
  assert.deepEqual(c.caHeaders, { foo: 'bar' });
});

test('static mode: XDS_ADDRESS="" with LOCAL_XDS_PATH and the local CA', () => {
  const c = parseConfig({ XDS_ADDRESS: '', LOCAL_XDS_PATH: '/etc/skein/local.yaml', FAKE_CA: 'true', SKEIN_LOCAL_CA_DIR: '/tmp/ca' });
  assert.equal(c.xdsAddress, undefined);
  assert.equal(c.localXdsPath, '/etc/skein/local.yaml');
  assert.equal(c.localCa, true);
  assert.equal(c.caAddress, undefined);
  assert.equal(c.localCaDir, '/tmp/ca');
});

test('roots and tokens: path, SYSTEM, inline PEM, literal token', () => {
  const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
  const c = parseConfig({ XDS_ROOT_CA: 'SYSTEM', CA_ROOT_CA: pem, AUTH_TOKEN: 'eyJhbGciOi.literal.token' });
  assert.deepEqual(c.xdsRootCa, { kind: 'system' });
  assert.deepEqual(c.caRootCa, { kind: 'pem', pem });
  assert.deepEqual(c.authToken, { kind: 'literal', token: 'eyJhbGciOi.literal.token' });
});

test('PROXY_CONFIG YAML sets ports and discovery address', () => {
  const c = parseConfig({ PROXY_CONFIG: 'discoveryAddress: istiod.x.svc:15012\nproxyAdminPort: 16000\nstatsPort: 16020\n' });
  assert.equal(c.xdsAddress, 'https://istiod.x.svc:15012');
  assert.equal(c.adminPort, 16000);
  assert.equal(c.statsPort, 16020);
});

test('every bad value is reported at once, by variable name', () => {
  try {
    parseConfig({
      PROXY_MODE: 'sidecar', INPOD_PORT_REUSE: 'maybe', PACKET_MARK: 'x', SECRET_TTL: 'forever', SKEIN_FASTPATH: '1',
      LOCAL_XDS: 'a', LOCAL_XDS_PATH: 'b', PROXY_WORKLOAD_INFO: 'onlyns', ISTIO_METAJSON_X: '{', RUST_LOG: 'info,access=loud', LOG_FORMAT: 'xml',
    });
    assert.fail('should have thrown');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    const text = err.problems.join('\n');
    for (const name of ['PROXY_MODE', 'INPOD_PORT_REUSE', 'PACKET_MARK', 'SECRET_TTL', 'SKEIN_FASTPATH: unknown SKEIN_ variable', 'LOCAL_XDS_PATH and LOCAL_XDS', 'PROXY_WORKLOAD_INFO', 'ISTIO_METAJSON_X', 'RUST_LOG', 'LOG_FORMAT']) {
      assert.ok(text.includes(name), `missing problem for ${name}:\n${text}`);
    }
  }
  assert.throws(() => parseConfig({ XDS_ADDRESS: '' }), /neither LOCAL_XDS_PATH nor LOCAL_XDS/);
  assert.throws(() => parseConfig({ PROXY_MODE: 'dedicated' }), /PROXY_WORKLOAD_INFO: required/);
});

test('COMPLIANCE_POLICY: exactly "pqc" turns the post-quantum key exchange on, as ztunnel compares it', () => {
  assert.equal(parseConfig({}).pqc, false);
  assert.equal(parseConfig({ COMPLIANCE_POLICY: 'pqc' }).pqc, true);
  assert.equal(parseConfig({ COMPLIANCE_POLICY: 'fips-140-2' }).pqc, false);
  assert.equal(parseConfig({ COMPLIANCE_POLICY: 'PQC' }).pqc, false);
});

test('durations', () => {
  assert.equal(parseDurationMs('24h'), 86_400_000);
  assert.equal(parseDurationMs('1h30m'), 5_400_000);
  assert.equal(parseDurationMs('500ms'), 500);
  assert.equal(parseDurationMs('90'), 90_000);
  assert.equal(parseDurationMs('h'), undefined);
  // duration_str's other forms, as ztunnel takes them: any case, long names, sums and products.
  assert.equal(parseDurationMs('24H'), 86_400_000);
  assert.equal(parseDurationMs('5 minutes'), 300_000);
  assert.equal(parseDurationMs('1Hour'), 3_600_000);
  assert.equal(parseDurationMs('1w'), 7 * 86_400_000);
  assert.equal(parseDurationMs('1h 30m'), 5_400_000);
  assert.equal(parseDurationMs('3m+31'), 211_000);
  assert.equal(parseDurationMs('3m + 31s'), 211_000);
  assert.equal(parseDurationMs('1m*10'), 600_000);
  assert.equal(parseDurationMs('1500us'), 2);
  for (const bad of ['', '5 fortnights', '3m+', '+3m', '1h-5m', 'ten seconds']) assert.equal(parseDurationMs(bad), undefined, bad);
  assert.equal(parseConfig({ SECRET_TTL: '12H' }).secretTtlSeconds, 43_200);
});

test('the drain deadline follows ztunnel: CONNECTION_TERMINATION_DEADLINE, else the grace period less 5 s (long) or 1 s (short), else 5 s', () => {
  const drain = (env: Record<string, string>): number => parseConfig({ ...env }).drainMs;
  assert.equal(drain({}), 5000);
  assert.equal(drain({ TERMINATION_GRACE_PERIOD_SECONDS: '30' }), 25_000);
  assert.equal(drain({ TERMINATION_GRACE_PERIOD_SECONDS: '5' }), 4000);
  assert.equal(drain({ TERMINATION_GRACE_PERIOD_SECONDS: '1' }), 1000, 'at least a second');
  assert.equal(drain({ TERMINATION_GRACE_PERIOD_SECONDS: '0' }), 1000);
  assert.equal(drain({ TERMINATION_GRACE_PERIOD_SECONDS: '30', CONNECTION_TERMINATION_DEADLINE: '2s' }), 2000);
  assert.throws(() => parseConfig({ TERMINATION_GRACE_PERIOD_SECONDS: 'soon' }), /TERMINATION_GRACE_PERIOD_SECONDS/);
});

test('the DNS proxy: on by default on 15053, off with ISTIO_META_DNS_CAPTURE=false, its port from ISTIO_META_DNS_PROXY_ADDR', () => {
  const on = parseConfig({});
  assert.deepEqual([on.dnsProxy, on.dnsProxyPort, on.dnsResolvConf], [true, 15053, '/etc/resolv.conf']);
  const off = parseConfig({ ISTIO_META_DNS_CAPTURE: 'false', ISTIO_META_DNS_PROXY_ADDR: 'localhost:15054', SKEIN_DNS_RESOLV_CONF: '/tmp/r' });
  assert.deepEqual([off.dnsProxy, off.dnsProxyPort, off.dnsResolvConf], [false, 15054, '/tmp/r']);
  assert.throws(() => parseConfig({ ISTIO_META_DNS_PROXY_ADDR: 'localhost' }), /ISTIO_META_DNS_PROXY_ADDR: expected host:port/);
});

test('TCP keepalive follows ztunnel: on, 180 s idle, 180 s between probes, 9 probes; KEEPALIVE_* override it', () => {
  // ztunnel src/config.rs SocketConfig::default(): keepalive_time 180s,
  // keepalive_interval 180s, keepalive_retries 9, keepalive_enabled true.
  assert.deepEqual(parseConfig({}).keepalive, { enabled: true, timeSeconds: 180, intervalSeconds: 180, retries: 9 });
  assert.deepEqual(parseConfig({ KEEPALIVE_TIME: '30s', KEEPALIVE_INTERVAL: '1m', KEEPALIVE_RETRIES: '3' }).keepalive, { enabled: true, timeSeconds: 30, intervalSeconds: 60, retries: 3 });
  assert.deepEqual(parseConfig({ KEEPALIVE_TIME: '1500ms' }).keepalive.timeSeconds, 2, 'the kernel takes whole seconds: rounded up');
  assert.equal(parseConfig({ KEEPALIVE_ENABLED: 'false' }).keepalive.enabled, false);
  assert.throws(() => parseConfig({ KEEPALIVE_TIME: '0s', KEEPALIVE_INTERVAL: 'soon', KEEPALIVE_RETRIES: '200', KEEPALIVE_ENABLED: 'maybe' }), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.problems.length, 4, err.message);
    for (const v of ['KEEPALIVE_TIME', 'KEEPALIVE_INTERVAL', 'KEEPALIVE_RETRIES', 'KEEPALIVE_ENABLED']) assert.match(err.message, new RegExp(`${v}:`));
    return true;
  });
});

test('SKEIN_STATS_EVICTION_INTERVAL: an hour by default, any duration, 0 to keep every series, a bad value refused', () => {
  assert.equal(parseConfig({}).statsEvictionMs, 3_600_000);
  assert.equal(parseConfig({ SKEIN_STATS_EVICTION_INTERVAL: '10m' }).statsEvictionMs, 600_000);
  assert.equal(parseConfig({ SKEIN_STATS_EVICTION_INTERVAL: '0' }).statsEvictionMs, 0);
  assert.throws(() => parseConfig({ SKEIN_STATS_EVICTION_INTERVAL: 'soon' }), (e: unknown) =>
    e instanceof ConfigError && e.problems.some((p) => p.startsWith('SKEIN_STATS_EVICTION_INTERVAL:')));
});

test('durations that timers wait for stop at 2^31 - 1 ms (Node would fire a longer timer at once)', () => {
  const c = parseConfig({ POOL_UNUSED_RELEASE_TIMEOUT: '1000d', CONNECTION_TERMINATION_DEADLINE: '30d' });
  assert.equal(c.poolUnusedReleaseTimeoutMs, 0x7fff_ffff);
  assert.equal(c.drainMs, 0x7fff_ffff);
  assert.equal(parseConfig({ POOL_UNUSED_RELEASE_TIMEOUT: '24d' }).poolUnusedReleaseTimeoutMs, 24 * 86_400_000);
});

test('ZTUNNEL_WORKER_THREADS takes ztunnel\'s forms (a number, 0, N% of ZTUNNEL_CPU_LIMIT), ProxyConfig concurrency, and the chart\'s CPU facts; a bad one is named', () => {
  assert.equal(parseConfig({ ZTUNNEL_WORKER_THREADS: '25%', ZTUNNEL_CPU_LIMIT: '16' }).workerThreads, 4);
  assert.equal(parseConfig({ ZTUNNEL_WORKER_THREADS: '0', ZTUNNEL_CPU_LIMIT: '6' }).workerThreads, 6);
  assert.equal(parseConfig({ PROXY_CONFIG: 'concurrency: 3' }).workerThreads, 3);
  assert.equal(parseConfig({ ZTUNNEL_RESOURCE_CPU_LIMIT: '5', ZTUNNEL_CPU_LIMIT: '5' }).workerThreads, 5);
  assert.throws(() => parseConfig({ ZTUNNEL_WORKER_THREADS: 'lots' }), (err: unknown) =>
    err instanceof ConfigError && err.problems.some((p) => p.startsWith('ZTUNNEL_WORKER_THREADS:')));
});

test('every SKEIN_* variable the daemon reads is one the validator knows (an unknown one stops the start)', () => {
  // process.env.SKEIN_X, env.SKEIN_X, and the config reader's p.str('SKEIN_X') and friends.
  const read = capturesInSources(/\benv\.(SKEIN_[A-Z0-9_]+)|\bp\.\w+\('(SKEIN_[A-Z0-9_]+)'/g);
  // The launcher's own, removed before the daemon starts (launch.ts, bin/skein).
  read.delete('SKEIN_NODE_FLAGS');
  assert.ok(read.size >= 10, `found the reads (${[...read].join(', ')})`);
  for (const v of read) assert.ok((SKEIN_VARS as readonly string[]).includes(v), `${v} is read but not in SKEIN_VARS`);
  assert.doesNotThrow(() => parseConfig({ SKEIN_GIT_REVISION: '0123abc' }));
});
