// SPDX-License-Identifier: Apache-2.0
// Bulk throughput with iperf3 (Debian's): one TCP stream for a fixed number
// of seconds, client in the client pod, server in the server pod.
import type { LabPod } from '../../lab/index.ts';

export class IperfError extends Error {
  override name = 'IperfError';
}

export interface IperfRun {
  host: string;
  port: number;
  /** Whole seconds: iperf3 takes no fractions. */
  durationS: number;
}

/** Gbit/s the server received over one stream. */
export async function runIperf(client: Pick<LabPod, 'exec'>, run: IperfRun): Promise<number> {
  const args = ['-c', run.host, '-p', String(run.port), '-t', String(run.durationS), '-J', '--connect-timeout', '3000'];
  const r = await client.exec('iperf3', args, { timeoutMs: (run.durationS + 10) * 1000 });
  // With -J, iperf3 reports its errors inside the JSON too.
  if (r.code !== 0) throw new IperfError(`iperf3 ${args.join(' ')} exited ${r.code ?? r.signal}: ${r.stdout.trim() || r.stderr.trim()}`);
  return parseIperfGbps(r.stdout);
}

/** Receiver-side bits/s of an iperf3 `-J` report, in Gbit/s. */
export function parseIperfGbps(json: string): number {
  let report: { error?: string; end?: { sum_received?: { bits_per_second?: number } } };
  try {
    report = JSON.parse(json) as typeof report;
  } catch {
    throw new IperfError(`iperf3 printed no JSON:\n${json}`);
  }
  if (report.error !== undefined) throw new IperfError(`iperf3: ${report.error}`);
  const bps = report.end?.sum_received?.bits_per_second;
  if (typeof bps !== 'number' || !(bps > 0)) throw new IperfError('iperf3 report has no positive end.sum_received.bits_per_second');
  return bps / 1e9;
}
