// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import type { LogLevel } from '../config.ts';
import { changeLevels, createLogger, scoped, type Logger } from '../log.ts';
import { ProxyState } from '../state/store.ts';
import { pod, serviceResource, workloadResource, ip } from '../state/testing.ts';
import { ProxyStateUpdater } from '../state/updater.ts';
import { POLICY_REJECTION_PREFIX } from '../../../test/compat/ztunnel-facts.ts';
import { accessFields, logComplete, logFailed, policyRejection } from './access-log.ts';

function state(): ProxyState {
  const s = new ProxyState();
  new ProxyStateUpdater(s).addressHandler.handle([
    workloadResource(pod('client', 'a', '10.0.0.1', { serviceAccount: 'sleep' })),
    workloadResource(pod('server', 'b', '10.0.0.2', { serviceAccount: 'web', clusterId: 'east' })),
    serviceResource({ name: 'web', namespace: 'b', hostname: 'web.b.svc.cluster.local', addresses: [{ address: ip('10.96.0.1') }], ports: [{ servicePort: 80, targetPort: 8080 }] }),
  ], []);
  return s;
}

test('an outbound HBONE connection names both ends as ztunnel does: dst.addr is :15008, dst.hbone_addr the target', () => {
  const s = state();
  const source = s.workloads.byAddress('', '10.0.0.1');
  const fields = accessFields({
    direction: 'outbound', srcAddr: '10.0.0.1:40000', source, srcIdentity: { trustDomain: 'cluster.local', namespace: 'a', serviceAccount: 'sleep' },
    dstAddr: '10.0.0.2:15008', hboneAddr: '10.0.0.2:8080', destination: s.workloads.byAddress('', '10.0.0.2'), service: s.services.byVip('', '10.96.0.1'),
  });
  assert.deepEqual(fields, {
    'src.addr': '10.0.0.1:40000', 'src.workload': 'client', 'src.namespace': 'a', 'src.identity': 'spiffe://cluster.local/ns/a/sa/sleep', 'src.cluster': 'Kubernetes',
    'dst.addr': '10.0.0.2:15008', 'dst.hbone_addr': '10.0.0.2:8080', 'dst.service': 'web.b.svc.cluster.local', 'dst.workload': 'server', 'dst.namespace': 'b',
    'dst.identity': 'spiffe://cluster.local/ns/b/sa/web', 'dst.cluster': 'east', direction: 'outbound',
  });
});

test('a plaintext connection to a non-mesh address carries no identities and no empty fields', () => {
  const fields = accessFields({ direction: 'outbound', srcAddr: '10.0.0.1:1', source: undefined, srcIdentity: undefined, dstAddr: '192.0.2.1:80', destination: undefined, service: undefined });
  assert.deepEqual(fields, { 'src.addr': '10.0.0.1:1', 'dst.addr': '192.0.2.1:80', direction: 'outbound' });
});

/** An access-scope logger at `level` writing JSON, and the lines it wrote. */
function accessLogger(level: LogLevel): { log: Logger; lines: Record<string, unknown>[] } {
  const out = new PassThrough();
  const lines: Record<string, unknown>[] = [];
  out.on('data', (d: Buffer) => { for (const l of d.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>); });
  return { log: scoped(createLogger(level, 'json', out), 'access'), lines };
}

test('complete is INFO, or ERROR with error=; failed is WARN; all under scope access', async () => {
  const { log, lines } = accessLogger('info');
  logComplete(log, { direction: 'inbound' }, { bytesSent: 3, bytesRecv: 4, durationMs: 5 });
  logComplete(log, { direction: 'inbound' }, { bytesSent: 0, bytesRecv: 0, durationMs: 1, error: 'reset' });
  logFailed(log, { direction: 'outbound' }, 'RBAC: denied');
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(lines.map((l) => [l.level, l.message, l.scope, l.error, l.bytes_sent, l.duration]), [
    ['info', 'connection complete', 'access', undefined, 3, '5ms'],
    ['error', 'connection complete', 'access', 'reset', 0, '1ms'],
    ['warn', 'connection failed', 'access', 'RBAC: denied', undefined, undefined],
  ]);
});

test('a level set above a line skips it, and a level changed at run time is obeyed', async () => {
  const { log, lines } = accessLogger('error');
  logComplete(log, { direction: 'inbound' }, { bytesSent: 3, bytesRecv: 4, durationMs: 5 });
  logFailed(log, { direction: 'outbound' }, 'RBAC: denied');
  logComplete(log, { direction: 'inbound' }, { bytesSent: 0, bytesRecv: 0, durationMs: 1, error: 'reset' });
  changeLevels(log, { global: 'info', scopes: new Map(), reset: false });
  logComplete(log, { direction: 'inbound' }, { bytesSent: 3, bytesRecv: 4, durationMs: 5 });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(lines.map((l) => [l.level, l.error]), [['error', 'reset'], ['info', undefined]]);
});

test("an RBAC denial's error has ztunnel's wording", () => {
  assert.equal(policyRejection('explicitly denied by: default/deny'), `${POLICY_REJECTION_PREFIX}explicitly denied by: default/deny`);
});
