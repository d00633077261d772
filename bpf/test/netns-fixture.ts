// SPDX-License-Identifier: Apache-2.0
// A throwaway network namespace for the addon's kernel tests: loopback only,
// no route anywhere. (The full lab lives in test/; these tests need less.)
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { after, before } from 'node:test';
import { needsRoot as rootOnly } from '../../test/skips.ts';

export interface TempNetns {
  name: string;
  path: string;
  /** Runs a command inside the namespace; throws with its stderr on failure. */
  run(cmd: string, ...args: string[]): string;
  remove(): void;
}

let seq = 0;

export const isRoot = process.getuid?.() === 0;
export const needsRoot = rootOnly('network namespaces, iptables');

export function createNetns(): TempNetns {
  const name = `skein-t${process.pid}-${seq++}`;
  execFileSync('ip', ['netns', 'add', name]);
  const ns: TempNetns = {
    name,
    path: `/run/netns/${name}`,
    run: (cmd, ...args) => execFileSync('ip', ['netns', 'exec', name, cmd, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }),
    remove: () => {
      if (fs.existsSync(ns.path)) execFileSync('ip', ['netns', 'del', name]);
    },
  };
  try {
    ns.run('ip', 'link', 'set', 'lo', 'up');
  } catch (err) {
    ns.remove();
    throw err;
  }
  return ns;
}

/** Number of fds this process has open, for leak checks. */
export function openFdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/**
 * One namespace for a test file: made before its tests (as root), removed
 * after them. `setup` runs on it first (rules, addresses).
 */
export function suiteNetns(setup?: (ns: TempNetns) => void): () => TempNetns {
  let ns: TempNetns | undefined;
  before(() => {
    if (!isRoot) return;
    ns = createNetns();
    setup?.(ns);
  });
  after(() => { ns?.remove(); });
  return () => {
    if (ns === undefined) throw new Error('no test namespace (these tests need root)');
    return ns;
  };
}
