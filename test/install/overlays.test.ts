// SPDX-License-Identifier: Apache-2.0
// The IstioOperator overlays (istio-overlays/), offline: each is checked
// against Istio's install API (Go types + values proto, see istio-api.ts),
// and what it changes is checked on Istio's real charts rendered by helm — the
// ztunnel DaemonSet with Skein's image, istiod's CA trust for Skein's
// ServiceAccount as the Skein chart names it. istioctl's own merge of
// profile, values and k8s overlays is approximated: values.ztunnel flattened
// onto the ztunnel chart, values.pilot handed to the istiod chart, overlay
// patches applied by the small path resolver below.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { chartDir, container, helm, istioDir, type K8sObject, only, parseManifests, podSpec, repoRoot } from './helm.ts';
import { loadIstioApi } from './istio-api.ts';

const overlayDir = `${repoRoot}istio-overlays`;
const api = loadIstioApi(istioDir);

interface Patch { path: string; value?: unknown }
interface Overlay {
  apiVersion: string;
  kind: string;
  spec: {
    profile?: string;
    components?: { ztunnel?: { enabled?: boolean; k8s?: { overlays?: { apiVersion: string; kind: string; name: string; patches: Patch[] }[] } } };
    values?: { ztunnel?: Record<string, unknown>; pilot?: Record<string, unknown> & { env?: Record<string, string> } };
  };
}

function readOverlay(name: string): Overlay {
  const docs = fs.readFileSync(path.join(overlayDir, name), 'utf8').split(/^---$/m).filter((d) => d.trim() !== '');
  assert.equal(docs.length, 1, `${name}: istioctl takes one IstioOperator per -f file`);
  return parseYaml(docs[0] ?? '') as Overlay;
}

/** helm template with values given as an object (written to a temp file). */
async function renderWith(release: string, chart: string, values: unknown): Promise<K8sObject[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skein-overlay-'));
  try {
    const file = path.join(dir, 'values.json');
    fs.writeFileSync(file, JSON.stringify(values));
    const r = await helm(['template', release, chart, '-n', 'istio-system', '-f', file]);
    assert.equal(r.code, 0, r.stderr);
    return parseManifests(r.stdout);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Resolves an istioctl overlay path (`a.b.[key:value].c`, `[:value]` for a
 * leaf list item) in `obj` and replaces the node it names, as istioctl's
 * postprocess does for an existing path. Every node on the way must exist.
 */
function applyPatch(obj: unknown, patch: Patch): void {
  const segments = patch.path.match(/\[[^\]]*\]|[^.[\]]+/g) ?? [];
  let node: unknown = obj;
  segments.forEach((seg, i) => {
    const last = i === segments.length - 1;
    const at = segments.slice(0, i + 1).join('.');
    if (seg.startsWith('[')) {
      assert.ok(Array.isArray(node), `${at}: not a list`);
      const [key = '', want = ''] = seg.slice(1, -1).split(':');
      const idx = node.findIndex((x: unknown) => (key === '' ? x === want : (x as Record<string, unknown> | null)?.[key] === want));
      assert.ok(idx >= 0, `${at}: no such element`);
      if (last) node[idx] = patch.value;
      else node = node[idx];
      return;
    }
    assert.ok(node !== null && typeof node === 'object' && seg in node, `${at}: no such field`);
    const rec = node as Record<string, unknown>;
    if (last) rec[seg] = patch.value;
    else node = rec[seg];
  });
}

describe('the overlay files pass Istio\'s install API', () => {
  for (const name of fs.readdirSync(overlayDir).filter((f) => f.endsWith('.yaml'))) {
    it(`${name}: only fields istioctl knows, of the right types, on the ambient profile`, () => {
      const overlay = readOverlay(name);
      assert.deepEqual(api.check(overlay), []);
      assert.equal(overlay.apiVersion, 'install.istio.io/v1alpha1');
      assert.equal(overlay.kind, 'IstioOperator');
      assert.equal(overlay.spec.profile, 'ambient');
    });
  }

  it('the checker itself rejects what istioctl rejects, naming the path', () => {
    const bad = {
      apiVersion: 'install.istio.io/v1alpha1',
      kind: 'IstioOperator',
      spec: {
        profile: 'ambiant',
        hubb: 'x',
        components: { ztunnel: { enabled: 'false', k8s: { envs: [] } }, skein: {} },
        values: { pilot: { trustedZtunnelName: 'skein', trustedZtunnelNamespace: 1, env: { ANY: 'x' } }, ztunnel: { free: 'form' }, global: { logging: { level: 1 } } },
        unvalidatedValues: { pilot: { trustedZtunnelName: 'skein' } },
      },
    };
    assert.deepEqual(api.check(bad).map((p) => p.split(':')[0]).sort(), [
      'spec.components.skein',
      'spec.components.ztunnel.enabled',
      'spec.components.ztunnel.k8s.envs',
      'spec.hubb',
      'spec.profile',
      'spec.values.global.logging.level',
      'spec.values.pilot.trustedZtunnelName',
      'spec.values.pilot.trustedZtunnelNamespace',
    ]);
    assert.deepEqual(api.check({ ...bad, apiVersion: 'install.istio.io/v1', kind: 'Istio', spec: {} }).length, 2);
  });
});

describe('skein-in-place.yaml on Istio\'s ztunnel chart', () => {
  const overlay = readOverlay('skein-in-place.yaml');
  const ztunnelValues = overlay.spec.values?.ztunnel ?? {};

  it('keeps the ztunnel component and swaps in a full image reference', async () => {
    assert.equal(overlay.spec.components?.ztunnel?.enabled, true);
    const image = ztunnelValues.image;
    assert.equal(typeof image, 'string');
    assert.ok(String(image).includes('/'), 'an image with "/" replaces hub/image:tag-variant');
    const ds = only(await renderWith('ztunnel', `${istioDir}/ztunnel-chart`, { profile: 'ambient', ...ztunnelValues }), 'DaemonSet', 'ztunnel');
    const c = container(ds, 'istio-proxy');
    assert.equal(c.image, image);
    assert.deepEqual(c.args, ['proxy', 'ztunnel']);
    assert.equal(ds.spec?.template?.metadata?.labels?.app, 'ztunnel');
    const env = new Map((c.env ?? []).map((e) => [e.name, e.value]));
    assert.equal(env.get('SKEIN_KERNEL_FASTPATH'), 'auto');
    const hostPaths = new Map((podSpec(ds).volumes ?? []).flatMap((v) => (v.hostPath === undefined ? [] : [[v.name, v.hostPath.path] as const])));
    const mounts = new Map((c.volumeMounts ?? []).map((m) => [m.name, m.mountPath]));
    assert.equal(mounts.get([...hostPaths].find(([, p]) => p === '/sys/fs/bpf')?.[0] ?? ''), '/sys/fs/bpf');
    assert.ok([...hostPaths.values()].includes('/sys/fs/cgroup'));
    assert.ok([...hostPaths.values()].includes('/var/run/ztunnel'), 'the chart\'s own mounts stay');
  });

  it('its DaemonSet patch lands on an existing path and adds BPF and PERFMON to ztunnel\'s capabilities', async () => {
    const ds = only(await renderWith('ztunnel', `${istioDir}/ztunnel-chart`, { profile: 'ambient', ...ztunnelValues }), 'DaemonSet', 'ztunnel');
    const before = [...(container(ds, 'istio-proxy').securityContext?.capabilities?.add ?? [])];
    assert.ok(before.length > 0);
    const overlays = overlay.spec.components?.ztunnel?.k8s?.overlays ?? [];
    assert.equal(overlays.length, 1);
    for (const o of overlays) {
      assert.deepEqual([o.apiVersion, o.kind, o.name], [ds.apiVersion, ds.kind, ds.metadata.name]);
      for (const p of o.patches) applyPatch(ds, p);
    }
    const after = container(ds, 'istio-proxy').securityContext?.capabilities?.add ?? [];
    assert.deepEqual([...after].sort(), [...before, 'BPF', 'PERFMON'].sort(), 'nothing of Istio\'s list is lost');
  });

  it('the path resolver refuses a path that does not exist', () => {
    const obj = { spec: { containers: [{ name: 'a', x: 1 }] } };
    assert.throws(() => { applyPatch(obj, { path: 'spec.containers.[name:b].x', value: 2 }); }, /no such element/);
    assert.throws(() => { applyPatch(obj, { path: 'spec.pods.[name:a].x', value: 2 }); }, /no such field/);
    applyPatch(obj, { path: 'spec.containers.[name:a].x', value: 2 });
    assert.deepEqual(obj, { spec: { containers: [{ name: 'a', x: 2 }] } });
  });
});

describe('skein-separate.yaml with the Skein chart', () => {
  const overlay = readOverlay('skein-separate.yaml');

  it('disables Istio\'s ztunnel component', () => {
    assert.equal(overlay.spec.components?.ztunnel?.enabled, false);
  });

  it('makes istiod\'s CA trust the ServiceAccount the Skein chart creates, and still ztunnel\'s for the switch', async () => {
    const istiod = only(await renderWith('istiod', `${istioDir}/istiod-chart`, { profile: 'ambient', pilot: overlay.spec.values?.pilot }), 'Deployment', 'istiod');
    const env = (container(istiod, 'discovery').env ?? []).filter((e) => e.name === 'CA_TRUSTED_NODE_ACCOUNTS');
    assert.equal(env.length, 1, 'the overlay\'s value replaces the chart\'s default instead of adding a second');
    const trusted = (env[0]?.value ?? '').split(',');
    assert.equal(new Set((container(istiod, 'discovery').env ?? []).filter((e) => e.name === 'PILOT_ENABLE_AMBIENT').map((e) => e.value)).has('true'), true);

    const r = await helm(['template', 'skein', chartDir, '-n', 'istio-system', '--set', 'image.repository=registry.example.com/skein']);
    assert.equal(r.code, 0, r.stderr);
    const sa = only(parseManifests(r.stdout), 'ServiceAccount');
    assert.ok(trusted.includes(`${sa.metadata.namespace ?? ''}/${sa.metadata.name}`), `${trusted.join(',')} trusts the chart's ${sa.metadata.namespace ?? ''}/${sa.metadata.name}`);
    assert.ok(trusted.includes('istio-system/ztunnel'));
  });
});
