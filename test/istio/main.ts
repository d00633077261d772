// SPDX-License-Identifier: Apache-2.0
// `npm run lab:istio [-- --json]`: Skein against the real Istio control plane
// (etcd, kube-apiserver, istiod built by test/setup.sh --control-plane) in
// the lab. Progress goes to stderr; stdout carries the summary, or with
// --json one object. Everything is torn down at the end, also on Ctrl-C.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { missingBinaries } from './binaries.ts';
import { allOk, runIstioLab, type IstioLabReport } from './run.ts';

const usage = 'Usage: npm run lab:istio [-- --json] [-- --cni=istio-cni|double]\n  --cni  who enrolls pods: the real istio-cni node agent or the double (default: istio-cni)\n';
const args = process.argv.slice(2);
const unknown = args.filter((a) => !['--json', '--help', '-h', '--cni=istio-cni', '--cni=double'].includes(a));
if (args.includes('--help') || args.includes('-h') || unknown.length > 0) {
  if (unknown.length > 0) process.stderr.write(`lab:istio: unknown argument '${unknown[0] ?? ''}'\n`);
  (unknown.length > 0 ? process.stderr : process.stdout).write(usage);
  process.exit(unknown.length > 0 ? 2 : 0);
}
const json = args.includes('--json');
const cni = args.includes('--cni=double') ? 'double' : 'istio-cni';
const log = (line: string): void => { process.stderr.write(`lab:istio: ${line}\n`); };

const missing = missingBinaries();
if (missing.length > 0) {
  for (const m of missing) log(m);
  process.exit(1);
}
if (process.getuid?.() !== 0) {
  log('needs root (network namespaces, iptables, cgroups)');
  process.exit(1);
}
// On Ctrl-C, leave through process.exit: the lab's exit hook kills what it started (by PID).
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => { log(`${sig}: cleaning up`); process.exit(sig === 'SIGINT' ? 130 : 143); });
}

function text(r: IstioLabReport): string {
  const lines = [
    `istiod ${r.istiod.version}: ${r.workloads} workloads in Skein, ${r.nacks} NACKs`,
    ...r.paths.map((p) => `  ${p.ok ? 'ok  ' : 'FAIL'} ${p.path}: ${p.decision}`),
    `istioctl ztunnel-config on Skein's dumps: ${r.istioctl.ok}/${r.istioctl.checked} agree`,
    ...r.istioctl.checks.filter((c) => !c.ok).map((c) => `  FAIL ${c.kind}: ${c.detail}`),
  ];
  return `${lines.join('\n')}\n`;
}

let code = 1;
try {
  const t0 = performance.now();
  const outDir = fileURLToPath(new URL('../../.skein/lab-istio', import.meta.url));
  const report = await runIstioLab({ log, outDir, cni });
  const summary = { istiod: report.istiod, workloads: report.workloads, nacks: report.nacks, paths: report.paths, istioctl: { checked: report.istioctl.checked, ok: report.istioctl.ok } };
  process.stdout.write(json ? `${JSON.stringify(summary)}\n` : text(report));
  log(`dumps and logs kept in ${path.relative(process.cwd(), outDir)}/; done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  code = allOk(report) ? 0 : 1;
} catch (e) {
  const cause = (e as { cause?: unknown }).cause;
  log(`failed: ${(e as Error).stack ?? String(e)}${cause === undefined ? '' : `\ncaused by: ${cause instanceof Error ? cause.message : JSON.stringify(cause)}`}`);
}
process.exit(code);
