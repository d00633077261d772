// SPDX-License-Identifier: Apache-2.0
// `skein waypoint` as a user runs it: the real CLI as a child process, with
// KUBECONFIG pointing at the Kubernetes API server double. Checks what the
// double received (server-side apply, field manager, the objects) and what
// the CLI printed; dry runs send no writes; bad flags stop before any request.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, beforeEach, test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { KubeApiServerDouble, type KubeObj } from '../doubles/kube-apiserver/kube-apiserver-double.ts';

const skein = fileURLToPath(new URL('../../ztunnel-compat/bin/skein', import.meta.url));
const golden = (file: string): KubeObj[] =>
  parseAllDocuments(readFileSync(new URL(`../../waypoint/test/golden/${file}`, import.meta.url), 'utf8')).map((d) => d.toJS() as KubeObj);

const TOKEN = 'test-token-4f1c';
let api: KubeApiServerDouble;
let started = false;
let dir: string;
let kubeconfig: string;

interface Run { code: number; stdout: string; stderr: string }

function run(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(skein, ['waypoint', ...args], { env: { ...process.env, KUBECONFIG: kubeconfig, ...env }, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'skein-waypoint-cli-'));
  kubeconfig = join(dir, 'kubeconfig');
});

// A fresh API server for every test, so each sees only its own requests.
beforeEach(async () => {
  if (started) await api.stop();
  api = new KubeApiServerDouble({ token: TOKEN, namespaces: ['shop'] });
  await api.start();
  started = true;
  api.writeKubeconfig(kubeconfig, { namespace: 'shop' });
});

after(async () => {
  await api.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('apply --for all --enroll-namespace server-side applies the golden objects with field manager skein', async () => {
  api.seed({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient' } } });
  const r = await run(['apply', '--name', 'wp-all', '--namespace', 'shop', '--for', 'all', '--enroll-namespace']);
  assert.equal(r.stderr, '');
  assert.equal(r.code, 0);
  assert.equal(r.stdout, 'applied Gateway shop/wp-all\napplied Namespace shop\n');
  const writes = api.writes();
  assert.deepEqual(writes.map((w) => [w.method, w.path, w.status]), [
    ['PATCH', '/apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways/wp-all', 201],
    ['PATCH', '/api/v1/namespaces/shop', 200],
  ]);
  for (const w of writes) {
    assert.equal(w.contentType, 'application/apply-patch+yaml');
    assert.equal(w.query.fieldManager, 'skein');
    assert.equal(w.query.force, 'true');
    assert.equal(w.query.dryRun, undefined);
    assert.equal(w.authorization, `Bearer ${TOKEN}`);
  }
  // What was sent is exactly what `generate` prints for the same flags.
  assert.deepEqual(writes.map((w) => w.body), golden('stock-for-all-enroll.yaml'));
  const gw = api.get('gateway.networking.k8s.io/v1', 'Gateway', 'shop', 'wp-all');
  assert.equal((gw?.spec as { gatewayClassName?: string }).gatewayClassName, 'istio-waypoint');
  assert.deepEqual(gw?.metadata.labels, { 'istio.io/waypoint-for': 'all' });
  // Apply adds our label and leaves the namespace's others alone.
  assert.deepEqual(api.get('v1', 'Namespace', undefined, 'shop')?.metadata.labels, { 'istio.io/dataplane-mode': 'ambient', 'istio.io/use-waypoint': 'wp-all' });
});

test('apply --sandwich sends the Gateway and the EnvoyFilter; without --namespace the kubeconfig context decides', async () => {
  const r = await run(['apply', '--name', 'envoy-wp', '--sandwich', '--revision', 'canary']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'applied Gateway shop/envoy-wp\napplied EnvoyFilter shop/envoy-wp-proxy-protocol\n');
  const writes = api.writes();
  assert.deepEqual(writes.map((w) => w.path), [
    '/apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways/envoy-wp',
    '/apis/networking.istio.io/v1alpha3/namespaces/shop/envoyfilters/envoy-wp-proxy-protocol',
  ]);
  assert.deepEqual(writes.map((w) => w.body), golden('sandwich.yaml'));
  assert.ok(writes.every((w) => w.contentType === 'application/apply-patch+yaml' && w.query.fieldManager === 'skein'));
  assert.equal(api.get('gateway.networking.k8s.io/v1', 'Gateway', 'shop', 'envoy-wp')?.metadata.annotations?.['ambient.istio.io/waypoint-inbound-binding' as never], 'PROXY/15088');
});

test('apply --dry-run reads, prints what would change, and writes nothing', async () => {
  assert.equal((await run(['apply', '--name', 'wp', '-n', 'shop'])).code, 0);
  const before = api.writes().length;
  const r = await run(['apply', '--name', 'wp', '-n', 'shop', '--for', 'workload', '--enroll-namespace', '--dry-run']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(api.writes().length, before);
  assert.match(r.stdout, /^# dry run: would update Gateway shop\/wp \(server-side apply, field manager skein\)\n# dry run: would update Namespace shop/);
  // The rest is the YAML that would be applied.
  const docs = parseAllDocuments(r.stdout).map((d) => d.toJS() as KubeObj);
  assert.deepEqual(docs.map((d) => d.kind), ['Gateway', 'Namespace']);
  assert.deepEqual(docs[0]?.metadata.labels, { 'istio.io/waypoint-for': 'workload' });
  assert.deepEqual(api.get('gateway.networking.k8s.io/v1', 'Gateway', 'shop', 'wp')?.metadata.labels, { 'istio.io/waypoint-for': 'service' });
  const fresh = await run(['apply', '--name', 'other', '--sandwich', '--dry-run']);
  assert.match(fresh.stdout, /would create Gateway shop\/other .*\n# dry run: would create EnvoyFilter shop\/other-proxy-protocol/);
  assert.equal(api.writes().length, before);
});

test('list shows waypoints (istio-waypoint class or inbound binding) and skips other Gateways', async () => {
  api.seed({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'other' } });
  api.seed({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'ingress', namespace: 'shop' }, spec: { gatewayClassName: 'istio' } });
  api.seed({
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'far', namespace: 'other' }, spec: { gatewayClassName: 'istio-waypoint' },
    status: { addresses: [{ type: 'IPAddress', value: '10.96.7.7' }], conditions: [{ type: 'Programmed', status: 'True', reason: 'Programmed' }] },
  });
  assert.equal((await run(['apply', '--name', 'wp'])).code, 0);
  assert.equal((await run(['apply', '--name', 'envoy-wp', '--sandwich'])).code, 0);
  const writes = api.writes().length;
  const here = await run(['list']);
  assert.equal(here.code, 0, here.stderr);
  const rows = here.stdout.trimEnd().split('\n').map((l) => l.split(/\s{2,}/));
  assert.deepEqual(rows, [
    ['NAMESPACE', 'NAME', 'CLASS', 'FOR', 'BINDING', 'PROGRAMMED', 'ADDRESS'],
    ['shop', 'wp', 'istio-waypoint', 'service', 'HBONE', 'Unknown', '-'],
    ['shop', 'envoy-wp', 'istio', 'service', 'PROXY/15088', 'Unknown', '-'],
  ]);
  const all = await run(['list', '-A']);
  assert.match(all.stdout, /^other\s+far\s+istio-waypoint\s+service\s+HBONE\s+True\s+10\.96\.7\.7$/m);
  assert.doesNotMatch(all.stdout, /ingress/);
  assert.ok(api.requests.some((q) => q.method === 'GET' && q.path === '/apis/gateway.networking.k8s.io/v1/gateways'), 'list -A asks across namespaces');
  assert.equal((await run(['list', '-n', 'default'])).stdout, 'no waypoints found in namespace default\n');
  assert.equal(api.writes().length, writes);
});

test('status prints the Programmed condition and addresses, and fails for a missing waypoint', async () => {
  api.seed({
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'wp', namespace: 'shop' }, spec: { gatewayClassName: 'istio-waypoint' },
    status: {
      addresses: [{ type: 'Hostname', value: 'wp.shop.svc.cluster.local' }, { type: 'IPAddress', value: '10.96.0.15' }],
      conditions: [
        { type: 'Accepted', status: 'True', reason: 'Accepted' },
        { type: 'Programmed', status: 'True', reason: 'Programmed', message: 'Resource programmed, assigned to service(s) wp.shop.svc.cluster.local:15008' },
      ],
    },
  });
  const r = await run(['status', '--name', 'wp']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, [
    'Gateway shop/wp (class istio-waypoint)',
    'Programmed: True (Programmed): Resource programmed, assigned to service(s) wp.shop.svc.cluster.local:15008',
    'Addresses: wp.shop.svc.cluster.local (Hostname), 10.96.0.15 (IPAddress)',
    '',
  ].join('\n'));
  const missing = await run(['status', '--name', 'nope', '-n', 'shop']);
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, 'skein: waypoint shop/nope not found\n');
});

test('delete removes the Gateway, and the EnvoyFilter of a sandwiched one; --dry-run deletes nothing', async () => {
  assert.equal((await run(['apply', '--name', 'envoy-wp', '--sandwich'])).code, 0);
  assert.equal((await run(['apply', '--name', 'wp'])).code, 0);
  const writes = api.writes().length;
  const dry = await run(['delete', '--name', 'envoy-wp', '--dry-run']);
  assert.equal(dry.code, 0, dry.stderr);
  assert.equal(dry.stdout, 'dry run: would delete Gateway shop/envoy-wp\ndry run: would delete EnvoyFilter shop/envoy-wp-proxy-protocol\n');
  assert.equal(api.writes().length, writes);
  assert.ok(api.get('networking.istio.io/v1alpha3', 'EnvoyFilter', 'shop', 'envoy-wp-proxy-protocol'));

  const del = await run(['delete', '--name', 'envoy-wp']);
  assert.equal(del.code, 0, del.stderr);
  assert.equal(del.stdout, 'deleted Gateway shop/envoy-wp\ndeleted EnvoyFilter shop/envoy-wp-proxy-protocol\n');
  assert.deepEqual(api.writes().slice(writes).map((w) => [w.method, w.path]), [
    ['DELETE', '/apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways/envoy-wp'],
    ['DELETE', '/apis/networking.istio.io/v1alpha3/namespaces/shop/envoyfilters/envoy-wp-proxy-protocol'],
  ]);
  assert.equal(api.get('gateway.networking.k8s.io/v1', 'Gateway', 'shop', 'envoy-wp'), undefined);
  assert.equal(api.get('networking.istio.io/v1alpha3', 'EnvoyFilter', 'shop', 'envoy-wp-proxy-protocol'), undefined);

  const stock = await run(['delete', '--name', 'wp']);
  assert.equal(stock.stdout, 'deleted Gateway shop/wp\n');
  assert.equal(api.writes().at(-1)?.path, '/apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways/wp');
  const again = await run(['delete', '--name', 'wp']);
  assert.equal(again.code, 1);
  assert.equal(again.stderr, 'skein: waypoint shop/wp not found\n');
});

test('generate from the binary prints the golden files byte for byte and needs no cluster', async () => {
  const r = await run(['generate', '--name', 'envoy-wp', '--namespace', 'shop', '--sandwich', '--revision', 'canary'], { KUBECONFIG: join(dir, 'missing') });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, readFileSync(new URL('../../waypoint/test/golden/sandwich.yaml', import.meta.url), 'utf8'));
  assert.equal(api.requests.length, 0);
});

test('an unknown flag exits 2 with the usage before any request', async () => {
  const r = await run(['apply', '--name', 'wp', '--overwrite']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^skein: waypoint apply: unknown flag '--overwrite'\n\nUsage: skein waypoint <action> \[options\]/);
  assert.equal(r.stdout, '');
  const misplaced = await run(['list', '--sandwich']);
  assert.equal(misplaced.code, 2);
  assert.match(misplaced.stderr, /flag '--sandwich' does not apply here/);
  assert.equal(api.requests.length, 0);
});

test('API server refusals surface as errors with exit 1', async () => {
  api.writeKubeconfig(kubeconfig, { namespace: 'shop', token: 'wrong-token' });
  const denied = await run(['apply', '--name', 'wp']);
  assert.equal(denied.code, 1);
  assert.match(denied.stderr, /^skein: waypoint: .*401/);
  api.writeKubeconfig(kubeconfig, { namespace: 'shop' });
  const noNs = await run(['apply', '--name', 'wp', '-n', 'ghost']);
  assert.equal(noNs.code, 1);
  assert.match(noNs.stderr, /^skein: waypoint: apply Gateway ghost\/wp: HTTP 404: namespaces "ghost" not found\n$/);
  assert.equal(api.writes().filter((w) => w.status < 300).length, 0);
});
