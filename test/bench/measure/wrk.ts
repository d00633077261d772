// SPDX-License-Identifier: Apache-2.0
// Request latency and rate with wrk (Debian's), run in the client pod.
// wrk keeps its connections open, so these figures are per request on warm
// connections: what a proxy adds to each request, not to each handshake;
// `newConnections` measures the handshakes instead.
import type { LabPod } from '../../lab/index.ts';

export interface WrkResult {
  p50Ms: number;
  p99Ms: number;
  rps: number;
  requests: number;
  /** Socket errors plus non-2xx/3xx answers. */
  errors: number;
}

export interface WrkRun {
  url: string;
  connections: number;
  durationS: number;
  /** A new connection for every request (`Connection: close`): what a proxy adds per connection. */
  newConnections?: boolean;
}

export class WrkError extends Error {
  override name = 'WrkError';
}

/**
 * One wrk run with a single thread: the machine has two cores, and a second
 * load thread would only take CPU from the proxies being measured.
 */
export async function runWrk(client: Pick<LabPod, 'exec'>, run: WrkRun): Promise<WrkResult> {
  const close = run.newConnections === true ? ['-H', 'Connection: close'] : [];
  const args = ['-t1', `-c${run.connections}`, `-d${run.durationS}s`, '--timeout', '2s', '--latency', ...close, run.url];
  const r = await client.exec('wrk', args, { timeoutMs: (run.durationS + 10) * 1000 });
  if (r.code !== 0) throw new WrkError(`wrk ${args.join(' ')} exited ${r.code ?? r.signal}: ${r.stderr.trim() || r.stdout.trim()}`);
  const res = parseWrk(r.stdout);
  // A proxy that fails requests fast would otherwise look fast.
  if (res.requests === 0 || res.errors > res.requests * 0.01) {
    throw new WrkError(`wrk against ${run.url}: ${res.errors} errors in ${res.requests} requests\n${r.stdout}`);
  }
  return res;
}

const UNIT_MS: Record<string, number> = { us: 1e-3, ms: 1, s: 1e3, m: 60e3, h: 3600e3 };

/** Parses wrk's `--latency` report (its human output; wrk has no other). */
export function parseWrk(out: string): WrkResult {
  const time = (pct: number): number => {
    const m = new RegExp(`^\\s*${pct}%\\s+([\\d.]+)(us|ms|s|m|h)\\s*$`, 'm').exec(out);
    if (m?.[1] === undefined || m[2] === undefined) throw new WrkError(`no ${pct}% latency in wrk output (was --latency given?):\n${out}`);
    return Number(m[1]) * (UNIT_MS[m[2]] ?? NaN);
  };
  const num = (re: RegExp, what: string): number => {
    const m = re.exec(out);
    if (m?.[1] === undefined) throw new WrkError(`no ${what} in wrk output:\n${out}`);
    return Number(m[1]);
  };
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socketErrors = socket === null ? 0 : socket.slice(1).reduce((a, b) => a + Number(b), 0);
  const status = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  return {
    p50Ms: time(50),
    p99Ms: time(99),
    rps: num(/^Requests\/sec:\s+([\d.]+)/m, 'Requests/sec'),
    requests: num(/^\s*(\d+) requests in /m, 'request count'),
    errors: socketErrors + Number(status?.[1] ?? 0),
  };
}
