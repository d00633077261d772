// SPDX-License-Identifier: Apache-2.0
// Istio's own files that say what a ztunnel exports, as setup copies them from
// the istio.io/istio module into .skein/istio/ztunnel: istioctl's config_dump
// types (istioctl/pkg/writer/ztunnel/configdump/api.go), a real ztunnel's
// dump from istioctl's testdata, and Istio's ztunnel Grafana dashboard
// (manifests/addons/dashboards/ztunnel-dashboard.gen.json). Tests read names
// from here so that they assert Istio's names, not Skein's.
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseGoStructs } from '../install/istio-api.ts';

const dir = fileURLToPath(new URL('../../.skein/istio/ztunnel/', import.meta.url));

function read(name: string): string {
  const path = `${dir}${name}`;
  if (!fs.existsSync(path)) throw new Error(`${path} is missing; run 'npm run setup'`);
  return fs.readFileSync(path, 'utf8');
}

/** Every metric name the ztunnel dashboard's PromQL reads (istio_*, workload_manager_*, ...). */
export function dashboardMetricNames(): Set<string> {
  const names = new Set<string>();
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) { v.forEach(walk); return; }
    if (v === null || typeof v !== 'object') return;
    for (const [k, x] of Object.entries(v)) {
      if (k === 'expr' && typeof x === 'string') {
        // A metric is the identifier right before a `{` selector.
        for (const m of x.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\{/g)) names.add(m[1] ?? '');
      } else walk(x);
    }
  };
  walk(JSON.parse(read('ztunnel-dashboard.gen.json')));
  return names;
}

/** The JSON field names of one struct of istioctl's configdump/api.go (its json tags). */
export function configDumpFields(struct: string): string[] {
  const s = parseGoStructs(goStructsOnly(read('api.go'))).get(struct);
  if (s === undefined) throw new Error(`api.go has no struct ${struct}`);
  return [...s.fields.keys()];
}

/** A real ztunnel's config_dump, from istioctl's testdata. */
export function realZtunnelDump(): Record<string, unknown> {
  return JSON.parse(read('dump.json')) as Record<string, unknown>;
}

// api.go also has methods; parseGoStructs wants only `type X struct {}` blocks.
function goStructsOnly(source: string): string {
  return [...source.matchAll(/^type \w+ struct \{\n[\s\S]*?^\}/gm)].map((m) => m[0]).join('\n\n');
}
