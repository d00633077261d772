// SPDX-License-Identifier: Apache-2.0
// Real `istioctl ztunnel-config <kind> --file <dump> -o json` on Skein's
// /config_dump, offline (no cluster), each result compared with the state the
// same dump holds. What istioctl parses (istio istioctl/pkg/writer/ztunnel/
// configdump/api.go: ZtunnelDump, ZtunnelWorkload, WorkloadState) decides
// which fields count.
import { execFile } from 'node:child_process';
import { bin } from './binaries.ts';

export interface IstioctlCheck {
  /** The istioctl subcommand, e.g. `workload`. */
  kind: string;
  ok: boolean;
  detail: string;
}

export const KINDS = ['workload', 'service', 'policy', 'certificate', 'connections', 'all'] as const;

export function istioctl(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // No cluster: an unreadable kubeconfig proves --file needs none.
    execFile(bin('istioctl'), args, { timeout: 60_000, maxBuffer: 32 << 20, encoding: 'utf8', env: { PATH: process.env.PATH ?? '', HOME: '/nonexistent', KUBECONFIG: '/nonexistent/kubeconfig' } }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

type Obj = Record<string, unknown>;
const list = (v: unknown): Obj[] => (Array.isArray(v) ? v as Obj[] : v !== null && typeof v === 'object' ? Object.values(v as Obj) as Obj[] : []);
const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const sorted = (xs: string[]): string => JSON.stringify([...xs].sort());

/** Checks one kind; `dump` is the parsed config_dump istioctl read from `file`. */
export async function checkKind(kind: (typeof KINDS)[number], file: string, dump: Obj): Promise<IstioctlCheck> {
  const r = await istioctl(['ztunnel-config', kind, '--file', file, '-o', 'json']);
  if (r.code !== 0) return { kind, ok: false, detail: `exit ${r.code}: ${r.stderr.trim().slice(0, 400)}` };
  let out: unknown;
  try { out = JSON.parse(r.stdout); } catch { return { kind, ok: false, detail: `not JSON: ${r.stdout.slice(0, 200)}` }; }
  const same = (what: string, got: string, want: string): IstioctlCheck =>
    ({ kind, ok: got === want, detail: got === want ? `${what} agree` : `${what}: istioctl ${got}, Skein ${want}` });
  switch (kind) {
    case 'workload': {
      const key = (w: Obj): string => `${str(w.uid)} ${JSON.stringify(w.workloadIps)} ${str(w.protocol)} ${str(w.node)} ${str(w.serviceAccount)}`;
      return same(`${list(out).length} workloads (uid, IPs, protocol, node, service account)`, sorted(list(out).map(key)), sorted(list(dump.workloads).map(key)));
    }
    case 'service': {
      const key = (s: Obj): string => `${str(s.hostname)} ${JSON.stringify(s.vips)}`;
      return same(`${list(out).length} services (hostname, VIPs)`, sorted(list(out).map(key)), sorted(list(dump.services).map(key)));
    }
    case 'policy': {
      const key = (p: Obj): string => `${str(p.namespace)}/${str(p.name)} ${str(p.action)}`;
      return same(`${list(out).length} policies (name, action)`, sorted(list(out).map(key)), sorted(list(dump.policies).map(key)));
    }
    case 'certificate': {
      const key = (c: Obj): string => `${str(c.identity)} ${str(c.state)} ${list(c.certChain).length}`;
      return same(`${list(out).length} certificates (identity, state, chain length)`, sorted(list(out).map(key)), sorted(list(dump.certificates).map(key)));
    }
    case 'connections': {
      // istioctl lists each WorkloadState with its inbound/outbound connections.
      const conns = (w: Obj): string => {
        const c = (w.connections ?? {}) as Obj;
        const side = (v: unknown): string => sorted(list(v).map((x) => `${str(x.src)}>${str(x.originalDst)}>${str(x.actualDst)}/${str(x.protocol)}`));
        return `${str((w.info as Obj | undefined)?.name)} in:${side(c.inbound)} out:${side(c.outbound)}`;
      };
      return same(`${list(out).length} workload states with their connections`, sorted(list(out).map(conns)), sorted(list(dump.workloadState).map(conns)));
    }
    case 'all': {
      const o = (out ?? {}) as Obj;
      const counts = (d: Obj): string => ['workloads', 'services', 'policies', 'certificates'].map((k) => `${k}=${list(d[k]).length}`).join(' ');
      return same('the whole dump (counts)', counts(o), counts(dump));
    }
  }
}
