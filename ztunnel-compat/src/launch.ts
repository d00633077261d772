// SPDX-License-Identifier: Apache-2.0
// How bin/skein starts the daemon's Node.js, for what else starts it the
// same way (the benchmark's node proxies), so that they measure what runs in
// a cluster. bin/skein is a shell script and cannot import this; a test
// (launch.test.ts) holds the two to the same defaults.
import path from 'node:path';

/**
 * V8 sized for a proxy: small heaps, garbage that dies young. The young
 * generation is capped at 2 MB a semi-space (V8 otherwise grows it to as
 * much as 128 MB under a churn of short-lived objects, and those pages stay
 * resident), and V8 keeps one helper thread instead of four.
 */
export const DEFAULT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--v8-pool-size=1'];

/** SKEIN_NODE_FLAGS (words separated by blanks) replaces the defaults when set, also when empty. */
export function nodeFlags(env: NodeJS.ProcessEnv): string[] {
  const v = env.SKEIN_NODE_FLAGS;
  return v === undefined ? [...DEFAULT_NODE_FLAGS] : v.split(/\s+/).filter((w) => w !== '');
}

/**
 * The environment of the daemon's Node.js, from the caller's: Node's compile
 * cache in the checkout's state directory unless the caller chose one, and
 * without SKEIN_NODE_FLAGS, which is the launcher's (the daemon refuses
 * SKEIN_* variables it does not know).
 */
export function daemonEnv(env: NodeJS.ProcessEnv, repoRoot: string): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...env, NODE_COMPILE_CACHE: env.NODE_COMPILE_CACHE ?? path.join(repoRoot, '.skein', 'compile-cache') };
  delete out.SKEIN_NODE_FLAGS;
  return out;
}
