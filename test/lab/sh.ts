// SPDX-License-Identifier: Apache-2.0
// Running the system tools the lab is built with (ip, iptables, sysctl).
// Synchronous on purpose: building and tearing down happen between tests, and
// teardown must also work from a process 'exit' handler.
import { execFileSync } from 'node:child_process';

export class LabCommandError extends Error {
  override name = 'LabCommandError';
}

/** Runs a command; on failure throws with the command line and its stderr. */
export function run(cmd: string, args: readonly string[], input?: string): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'], timeout: 30_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    const stderr = (e.stderr ?? '').trim();
    throw new LabCommandError(`${cmd} ${args.join(' ')}: ${stderr || e.message}`);
  }
}

/** Runs `ip -batch`, optionally inside a named netns: one process for many commands. */
export function ipBatch(netns: string | null, lines: readonly string[]): void {
  if (lines.length === 0) return;
  const args = netns === null ? ['-batch', '-'] : ['-n', netns, '-batch', '-'];
  run('ip', args, `${lines.join('\n')}\n`);
}

/** Runs a command inside a named netns (`ip netns exec`). */
export function inNetns(netns: string, cmd: string, args: readonly string[], input?: string): string {
  return run('ip', ['netns', 'exec', netns, cmd, ...args], input);
}

/** Names of all network namespaces `ip netns` knows. */
export function listNetns(): string[] {
  return run('ip', ['netns', 'list']).split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n !== '');
}
