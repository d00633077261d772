// SPDX-License-Identifier: Apache-2.0
// What the demo needs from the machine, checked before it touches anything,
// so a refusal leaves nothing behind and says what is missing.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

export interface MachineFacts {
  uid: number | undefined;
  hasNetns: boolean;
  missingPrograms: string[];
}

const PROGRAMS = ['ip', 'iptables', 'iptables-restore', 'nsenter', 'ss', 'curl', 'haproxy'];

export function readMachine(): MachineFacts {
  const missingPrograms = PROGRAMS.filter((p) => {
    try {
      execFileSync('sh', ['-c', `command -v ${p}`], { stdio: 'ignore' });
      return false;
    } catch {
      return true;
    }
  });
  return { uid: process.getuid?.(), hasNetns: fs.existsSync('/proc/self/ns/net'), missingPrograms };
}

/** Why the demo cannot run here; empty when it can. */
export function refusals(m: MachineFacts): string[] {
  const out: string[] = [];
  if (m.uid !== 0) out.push('needs root: it creates network namespaces, iptables rules and cgroups (run it as root, e.g. sudo npm run demo)');
  if (!m.hasNetns) out.push('needs a kernel with network namespaces (CONFIG_NET_NS): /proc/self/ns/net is missing');
  if (m.missingPrograms.length > 0) out.push(`needs these programs (npm run setup installs them as root): ${m.missingPrograms.join(', ')}`);
  return out;
}
