// SPDX-License-Identifier: Apache-2.0
// The double answers as a real API server would where `skein waypoint` can
// tell: discovery shapes, auth, and what server-side apply insists on.
import assert from 'node:assert/strict';
import https from 'node:https';
import { after, before, test } from 'node:test';
import { KubeApiServerDouble } from './kube-apiserver-double.ts';

const api = new KubeApiServerDouble({ token: 't0ken', namespaces: ['shop'] });
before(() => api.start());
after(() => api.stop());

function call(method: string, path: string, opts: { body?: string; contentType?: string; token?: string } = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { authorization: `Bearer ${opts.token ?? 't0ken'}` };
    if (opts.contentType !== undefined) headers['content-type'] = opts.contentType;
    const req = https.request(`${api.url}${path}`, { method, ca: api.caPem, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { text += c; });
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }); });
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

const gw = (name: string): string => JSON.stringify({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name }, spec: { gatewayClassName: 'istio-waypoint' } });
const GW_PATH = '/apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways/wp';

test('discovery lists the served kinds with their resource names and scope', async () => {
  const r = await call('GET', '/apis/gateway.networking.k8s.io/v1');
  assert.equal(r.status, 200);
  assert.equal(r.body.kind, 'APIResourceList');
  assert.deepEqual((r.body.resources as { name: string; kind: string; namespaced: boolean }[]).map((x) => [x.name, x.kind, x.namespaced]), [['gateways', 'Gateway', true]]);
  const core = await call('GET', '/api/v1');
  assert.deepEqual((core.body.resources as { name: string }[]).map((x) => x.name), ['namespaces']);
  const groups = await call('GET', '/apis');
  assert.deepEqual((groups.body.groups as { name: string }[]).map((g) => g.name), ['gateway.networking.k8s.io', 'networking.istio.io']);
  assert.equal((await call('GET', '/apis/example.com/v1')).status, 404);
});

test('a wrong token gets 401 and changes nothing', async () => {
  const r = await call('PATCH', `${GW_PATH}?fieldManager=x`, { body: gw('wp'), contentType: 'application/apply-patch+yaml', token: 'nope' });
  assert.equal(r.status, 401);
  assert.equal(api.get('gateway.networking.k8s.io/v1', 'Gateway', 'shop', 'wp'), undefined);
});

test('apply needs the apply content type, a field manager and a matching name; then creates, then updates', async () => {
  assert.equal((await call('PATCH', `${GW_PATH}?fieldManager=x`, { body: gw('wp'), contentType: 'application/merge-patch+json' })).status, 415);
  const noManager = await call('PATCH', GW_PATH, { body: gw('wp'), contentType: 'application/apply-patch+yaml' });
  assert.equal(noManager.status, 422);
  assert.match(String(noManager.body.message), /fieldManager: Required value/);
  assert.equal((await call('PATCH', `${GW_PATH}?fieldManager=x`, { body: gw('other'), contentType: 'application/apply-patch+yaml' })).status, 400);
  const created = await call('PATCH', `${GW_PATH}?fieldManager=x`, { body: gw('wp'), contentType: 'application/apply-patch+yaml' });
  assert.equal(created.status, 201);
  assert.equal((created.body.metadata as { namespace: string }).namespace, 'shop');
  // YAML is what the content type names; JSON is just one spelling of it.
  const yamlBody = 'apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: wp\n  labels:\n    a: b\n';
  const updated = await call('PATCH', `${GW_PATH}?fieldManager=y`, { body: yamlBody, contentType: 'application/apply-patch+yaml' });
  assert.equal(updated.status, 200);
  const stored = api.get('gateway.networking.k8s.io/v1', 'Gateway', 'shop', 'wp');
  assert.ok(stored);
  assert.deepEqual(stored.metadata.labels, { a: 'b' });
  assert.deepEqual(stored.spec, { gatewayClassName: 'istio-waypoint' });
  assert.deepEqual((stored.metadata.managedFields as { manager: string }[]).map((m) => m.manager), ['x', 'y']);
  const list = await call('GET', '/apis/gateway.networking.k8s.io/v1/gateways');
  assert.equal(list.body.kind, 'GatewayList');
  assert.equal((list.body.items as unknown[]).length, 1);
  assert.equal((await call('DELETE', GW_PATH)).body.status, 'Success');
  const gone = await call('GET', GW_PATH);
  assert.equal(gone.status, 404);
  assert.equal(gone.body.reason, 'NotFound');
});
