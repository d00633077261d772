// SPDX-License-Identifier: Apache-2.0
// One run of the real-control-plane lab: bring the cluster up, apply a DENY
// policy through the API, send traffic along each path, read Skein's
// config_dump back with real istioctl, and report. Used by `npm run
// lab:istio` (main.ts) and by the test suite (istio-lab.test.ts).
import fs from 'node:fs';
import path from 'node:path';
import { moduleVersion } from './binaries.ts';
import { APP_NAMESPACE, APP_PODS, startIstioCluster, type IstioCluster } from './cluster.ts';
import { renderIstioConfigMaps } from './istio-config.ts';
import { checkKind, KINDS, type IstioctlCheck } from './istioctl.ts';
import { crossNode, denied, sameNode, type PathResult } from './probes.ts';
import { untilDump } from './dump.ts';
import { waypoint, WAYPOINT_POD } from './waypoint.ts';

export interface IstioLabReport {
  istiod: { version: string };
  /** Workloads in Skein's config_dump on node0, all from istiod. */
  workloads: number;
  /** xDS responses Skein rejected (its "rejected xDS resources (NACK)" log lines, all nodes). */
  nacks: number;
  paths: PathResult[];
  istioctl: { checked: number; ok: number; checks: IstioctlCheck[] };
}

export const DENY_POLICY = `${APP_NAMESPACE}/deny-blocked`;

export function allOk(r: IstioLabReport): boolean {
  return r.nacks === 0 && r.paths.length > 0 && r.paths.every((p) => p.ok) && r.istioctl.ok === r.istioctl.checked;
}

const count = (v: unknown): number => (Array.isArray(v) ? v.length : v !== null && typeof v === 'object' ? Object.keys(v).length : 0);
const names = (v: unknown): string[] => (Array.isArray(v) ? v as Record<string, unknown>[] : Object.values((v ?? {}) as Record<string, Record<string, unknown>>)).map((x) => `${String(x.namespace)}/${String(x.name)}`);

export interface RunOptions {
  /** Who enrolls pods: the real istio-cni node agent or the double. */
  cni?: 'istio-cni' | 'double';
  log: (line: string) => void;
  /** Where to keep the dumps and logs after the lab is gone. */
  outDir: string;
  /** Called with the live cluster before teardown (tests look further). */
  inspect?: (c: IstioCluster, report: IstioLabReport) => Promise<void>;
}

export async function runIstioLab(o: RunOptions): Promise<IstioLabReport> {
  const { log } = o;
  log('rendering istiod\'s config with istioctl manifest generate --set profile=ambient');
  const istioConfigMaps = await renderIstioConfigMaps();
  fs.rmSync(o.outDir, { recursive: true, force: true });
  fs.mkdirSync(o.outDir, { recursive: true });
  const c = await startIstioCluster({ istioConfigMaps, log, extraPods: [WAYPOINT_POD], cni: o.cni ?? 'double', keepLogsIn: o.outDir });
  try {
    const want = APP_PODS.length;
    log(`waiting for istiod to push the ${want} app workloads to Skein`);
    for (const i of [0, 1]) await untilDump(c, i, `${want} workloads`, (d) => count(d.workloads) >= want);

    log(`AuthorizationPolicy ${DENY_POLICY}: DENY from the blocked service account`);
    const [ns, name] = DENY_POLICY.split('/') as [string, string];
    await c.cp.kube.apply({
      apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name, namespace: ns },
      spec: { action: 'DENY', rules: [{ from: [{ source: { principals: [`cluster.local/ns/${APP_NAMESPACE}/sa/blocked`] } }] }] },
    });
    await untilDump(c, 1, `policy ${DENY_POLICY}`, (d) => names(d.policies).includes(DENY_POLICY));

    const paths: PathResult[] = [];
    log('waypoint: a Gateway of class istio-waypoint through the Gateway API; istiod renders it');
    for (const probe of [crossNode, sameNode, (x: IstioCluster) => denied(x, DENY_POLICY), waypoint]) {
      const r = await probe(c);
      log(`${r.path}: ${r.ok ? 'ok' : 'FAILED'} — ${r.decision}`);
      paths.push(r);
    }

    const checks: IstioctlCheck[] = [];
    let workloads = 0;
    for (const n of c.nodes) {
      const raw = await c.fetchFromNode(n, 'http://127.0.0.1:15000/config_dump');
      const file = path.join(o.outDir, `${n.name}.config_dump.json`);
      fs.writeFileSync(file, raw);
      const dump = JSON.parse(raw) as Record<string, unknown>;
      if (n.index === 0) workloads = count(dump.workloads);
      for (const kind of KINDS) {
        const r = await checkKind(kind, file, dump);
        checks.push({ ...r, kind: `${n.name}: ${r.kind}` });
      }
    }
    let nacks = 0;
    for (const n of c.nodes) {
      const text = fs.readFileSync(c.logOf(n), 'utf8');
      nacks += text.split('\n').filter((l) => l.includes('rejected xDS resources (NACK)')).length;
    }
    const report: IstioLabReport = {
      istiod: { version: moduleVersion('pilot-discovery') },
      workloads, nacks, paths,
      istioctl: { checked: checks.length, ok: checks.filter((x) => x.ok).length, checks },
    };
    if (o.inspect !== undefined) await o.inspect(c, report);
    return report;
  } finally {
    log('teardown');
    await c.teardown();
  }
}
