// SPDX-License-Identifier: Apache-2.0
// A long-running process in a lab host (nginx, iperf3 -s, haproxy): started,
// known to be listening before anyone dials it, and stopped by its PID. The
// lab also kills it at teardown, so a crashed benchmark leaves nothing.
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { LabNode } from '../lab/index.ts';

export interface Daemon {
  pid: number;
  stop(): Promise<void>;
}

/** Where a daemon runs: a lab node or pod, or anything that spawns into a netns the same way. */
export type DaemonHost = Pick<LabNode, 'spawn' | 'run' | 'netns'>;

export interface DaemonSpec {
  cmd: string;
  args: readonly string[];
  /** TCP ports it must listen on (in its host's netns) before it counts as started. */
  ports: readonly number[];
  timeoutMs?: number;
  /** Environment of the daemon (default: ours). */
  env?: NodeJS.ProcessEnv;
  /** Its /proc/<pid>/comm when not the command's name (Node names its main thread "MainThread"). */
  comm?: string;
  /** Its working directory (default: ours). */
  cwd?: string;
  /** Append its stderr (where Skein logs) to this file instead of keeping a tail in memory. */
  logPath?: string;
}

export class DaemonError extends Error {
  override name = 'DaemonError';
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function startDaemon(host: DaemonHost, spec: DaemonSpec): Promise<Daemon> {
  const logFd = spec.logPath === undefined ? undefined : fs.openSync(spec.logPath, 'a');
  const child = host.spawn(spec.cmd, spec.args, { stdio: ['ignore', 'ignore', logFd ?? 'pipe'], env: spec.env ?? process.env, ...(spec.cwd === undefined ? {} : { cwd: spec.cwd }) });
  if (logFd !== undefined) fs.closeSync(logFd); // the child has its own copy
  // Keep the last few KB of stderr for error messages; draining it also keeps
  // a chatty daemon from blocking on a full pipe.
  let tail = '';
  child.stderr?.on('data', (d: Buffer) => { tail = (tail + d.toString()).slice(-4096); });
  const stderrTail = (): string => (spec.logPath === undefined ? tail : fs.readFileSync(spec.logPath, 'utf8').slice(-4096)).trim();
  const what = `${spec.cmd} in ${host.netns}`;
  const deadline = Date.now() + (spec.timeoutMs ?? 5000);
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new DaemonError(`${what} exited (${child.exitCode ?? child.signalCode}) before listening: ${stderrTail()}`);
    }
    if (spec.ports.every((p) => listening(host, p))) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new DaemonError(`${what} is not listening on ${spec.ports.join(', ')} after ${spec.timeoutMs ?? 5000} ms: ${stderrTail()}`);
    }
    await sleep(25);
  }
  const pid = child.pid;
  // The spawn wrapper execs into the command, so the PID is the daemon's own
  // (what its CPU and memory are read from); check rather than trust that.
  const comm = pid === undefined ? '' : readComm(pid);
  if (pid === undefined || comm !== (spec.comm ?? path.basename(spec.cmd).slice(0, 15))) {
    child.kill('SIGKILL');
    throw new DaemonError(`${what}: pid ${pid} is '${comm}', not the daemon`);
  }
  return { pid, stop: () => stop(child) };
}

function listening(host: DaemonHost, port: number): boolean {
  // ss reads the kernel's socket table: no connection is made to find out.
  return host.run('ss', '-Hltn', 'sport', '=', `:${port}`).trim() !== '';
}

function readComm(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(t);
}
