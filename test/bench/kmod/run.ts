// SPDX-License-Identifier: Apache-2.0
// `npm run bench -- kmod`: in the VM lab (test/vm), the same HBONE tunnel to
// Skein's userspace HBONE server, its client side carried once by Skein's
// userspace HBONE client (Node, TLS in OpenSSL, HTTP/2 in nghttp2) and once by
// the kernel module (DATA framing in kmod/, records in kTLS); and the same
// pair for the native HBONE engine (bpf/src/hbone, test/vm/engine-client.ts):
// in userspace (OpenSSL + nghttp2 on its worker thread) and handing the
// tunnel to the module, the pod socket paired with it by splice. Each run sends
// BYTES through the server's echo and back and checks them. Reported:
// throughput, and the client's CPU per GiB moved (user and kernel time in its
// own syscalls: for the module, its framing and kTLS's crypto): the client
// process's for the first pair, the engine's worker thread's for the engine
// pair (its app end, JavaScript in the same process, is left out).
// The server side is the same Node process for both. The VM is emulated
// (qemu TCG; its /proc/stat counts no idle time, so the VM's total cannot
// be used): compare the two paths' ratios, not absolute figures.
import path from 'node:path';
import { median } from '../measure/stats.ts';
import { CRYPTO_ACCEL_MODULES, projectRoot, runInVm, vmImage } from '../../vm/vm.ts';

export interface KmodFigures {
  /** MiB per second, both directions together. */
  throughput_mib_s: number;
  /** CPU seconds of the client process per GiB moved (both directions together), kernel time in its syscalls included. */
  cpu_s_per_gib: number;
}

export type KmodPath = 'userspace' | 'kmod' | 'engine-userspace' | 'engine-kmod';

export interface KmodPathReport {
  path: KmodPath;
  description: string;
  figures: KmodFigures;
  min: KmodFigures;
  max: KmodFigures;
}

export interface KmodReport {
  scenario: 'kmod';
  reps: number;
  /** Sent each way per run. */
  bytes: number;
  kernel: string;
  emulation: 'tcg';
  paths: KmodPathReport[];
  /** kmod over userspace (the first pair): above 1 means the module moves more (throughput) or its client costs more (CPU). */
  ratios: { throughput: number; cpu_per_gib: number };
  /** The engine with the module over the engine in userspace, the same way. */
  engine_ratios: { throughput: number; cpu_per_gib: number };
}

export interface KmodRun { path: KmodPath; bytes: number; ms: number; cpuMs: number }

/** The "bench PATH bytes=N ms=T cpu_ms=C" lines the VM's programs print. */
export function parseBenchLines(output: string): KmodRun[] {
  const runs: KmodRun[] = [];
  for (const m of output.matchAll(/^bench (userspace|kmod|engine-userspace|engine-kmod) bytes=(\d+) ms=(\d+) cpu_ms=(\d+)$/gm)) {
    runs.push({ path: m[1] as KmodPath, bytes: Number(m[2]), ms: Number(m[3]), cpuMs: Number(m[4]) });
  }
  return runs;
}

export function figures(r: KmodRun): KmodFigures {
  const moved = 2 * r.bytes;
  return {
    throughput_mib_s: Number((moved / 2 ** 20 / (Math.max(r.ms, 1) / 1000)).toFixed(2)),
    cpu_s_per_gib: Number((r.cpuMs / 1000 / (moved / 2 ** 30)).toFixed(2)),
  };
}

const DESCRIPTIONS = {
  userspace: "Skein's userspace HBONE client (proxy/hbone/client.ts): TLS and HTTP/2 in the Node process",
  kmod: 'the same tunnel handed to kmod/ after the handshake and CONNECT: DATA frames in the kernel, records in kTLS',
  'engine-userspace': 'the native HBONE engine (bpf/src/hbone) from a pod socket: TLS in OpenSSL and HTTP/2 in nghttp2 on its worker thread',
  'engine-kmod': 'the native engine handing the tunnel to kmod/ (kTLS keyed from the handshake), the pod socket paired with it by splice()',
} as const;

function summarise(p: KmodPath, runs: readonly KmodRun[]): KmodPathReport {
  const f = runs.filter((r) => r.path === p).map(figures);
  if (f.length === 0) throw new Error(`no ${p} run reported`);
  const pick = (k: keyof KmodFigures, how: (xs: number[]) => number): number => Number(how(f.map((x) => x[k])).toFixed(2));
  const by = (how: (xs: number[]) => number): KmodFigures => ({ throughput_mib_s: pick('throughput_mib_s', how), cpu_s_per_gib: pick('cpu_s_per_gib', how) });
  return { path: p, description: DESCRIPTIONS[p], figures: by(median), min: by((xs) => Math.min(...xs)), max: by((xs) => Math.max(...xs)) };
}

export async function runKmodBench(o: { reps: number; bytes: number; log: (line: string) => void }): Promise<KmodReport> {
  const img = vmImage();
  if (typeof img === 'string') throw new Error(img);
  const script = `
mount -t sysfs sys /host/sys && mount -t devtmpfs dev /host/dev && mount -t proc proc /host/proc && mount -t tmpfs tmp /host/tmp || exit 10
insmod /root/skein_hbone.ko || exit 11
chroot /host sh -c "cd '${projectRoot}' && exec test/node test/vm/hbone-peer.ts /tmp/hbone" > /tmp/peer.out 2>&1 &
peer=$!
i=0
while ! grep -q '^ready ' /tmp/peer.out && [ $i -lt 600 ] && kill -0 $peer 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
port=$(sed -n 's/^ready //p' /tmp/peer.out)
[ -n "$port" ] || { cat /tmp/peer.out; exit 12; }
for rep in $(seq 1 ${o.reps}); do
  chroot /host sh -c "cd '${projectRoot}' && exec test/node test/vm/hbone-client.ts $port /tmp/hbone ${o.bytes}" || exit 13
  /root/hbone_interop "$port" /host/tmp/hbone ${o.bytes} || exit 14
  chroot /host sh -c "cd '${projectRoot}' && exec test/node test/vm/engine-client.ts $port /tmp/hbone ${o.bytes} userspace" || exit 15
  chroot /host sh -c "cd '${projectRoot}' && exec test/node test/vm/engine-client.ts $port /tmp/hbone ${o.bytes} kmod" || exit 16
done
kill $peer; wait $peer
cat /tmp/peer.out
rmmod skein_hbone
`;
  o.log(`booting the VM (${img.release}, emulated): ${o.reps} run(s) per path of ${o.bytes} bytes each way`);
  const r = await runInVm(img, {
    modules: ['tls', 'gcm', 'ghash-generic', 'ctr', ...CRYPTO_ACCEL_MODULES],
    files: [
      { path: '/root/skein_hbone.ko', from: img.kmod },
      { path: '/root/hbone_interop', from: path.join(img.binDir, 'hbone_interop'), mode: 0o755 },
    ],
    script,
    shareHostDir: '/',
    memoryMb: 1536,
    timeoutMs: 120_000 + o.reps * 120_000,
  });
  if (r.exitCode !== 0 || r.kernelWarnings.length > 0) {
    throw new Error(`the VM run failed (exit ${r.exitCode}, timed out ${r.timedOut}, warnings ${r.kernelWarnings.length}):\n${r.output}\n${r.console.slice(-3000)}`);
  }
  const runs = parseBenchLines(r.output);
  o.log(`VM done in ${(r.elapsedMs / 1000).toFixed(0)} s`);
  const user = summarise('userspace', runs);
  const kmod = summarise('kmod', runs);
  const engine = summarise('engine-userspace', runs);
  const engineKmod = summarise('engine-kmod', runs);
  const ratio = (a: number, b: number): number => Number((a / b).toFixed(2));
  const ratios = (x: KmodPathReport, base: KmodPathReport): KmodReport['ratios'] => ({
    throughput: ratio(x.figures.throughput_mib_s, base.figures.throughput_mib_s), cpu_per_gib: ratio(x.figures.cpu_s_per_gib, base.figures.cpu_s_per_gib),
  });
  return {
    scenario: 'kmod', reps: o.reps, bytes: o.bytes, kernel: img.release, emulation: 'tcg',
    paths: [user, kmod, engine, engineKmod],
    ratios: ratios(kmod, user),
    engine_ratios: ratios(engineKmod, engine),
  };
}

export function kmodTable(r: KmodReport): string {
  const lines = [
    `scenario kmod: one HBONE tunnel through Skein's userspace server, ${r.bytes} bytes each way per run, median (min–max) of ${r.reps}; Debian ${r.kernel} under qemu TCG (compare ratios only)`,
    '',
    `${'path'.padEnd(18)}${'MiB/s (both ways)'.padEnd(28)}client CPU s per GiB`,
  ];
  for (const p of r.paths) {
    const range = (k: keyof KmodFigures): string => `${p.figures[k]} (${p.min[k]}–${p.max[k]})`;
    lines.push(`${p.path.padEnd(18)}${range('throughput_mib_s').padEnd(28)}${range('cpu_s_per_gib')}`);
  }
  lines.push('', `kmod / userspace: throughput ×${r.ratios.throughput}, CPU per GiB ×${r.ratios.cpu_per_gib}`,
    `engine-kmod / engine-userspace: throughput ×${r.engine_ratios.throughput}, CPU per GiB ×${r.engine_ratios.cpu_per_gib}`, '', ...r.paths.map((p) => `  ${p.path}: ${p.description}`), '');
  return lines.join('\n');
}
