// SPDX-License-Identifier: Apache-2.0
// Entry point of the `skein` command.
import { flushCompileCache } from 'node:module';
import { libbpfVersion, raiseNofileLimit } from '@skein/bpf';
import { cleanupKernel } from './accel/index.ts';
import { startApp, StartupError } from './app.ts';
import type { WaypointCommand } from '@skein/waypoint/args';
import { parseArgs, usage, UsageError } from './cli.ts';
import { ConfigError, parseConfig } from './config.ts';
import { createLogger, knownScopes, scoped } from './log.ts';
import { startMemoryRelease } from './memory-release.ts';
import { installProcessPolicy } from './process-policy.ts';
import { version } from './version.ts';

function readConfig(): ReturnType<typeof parseConfig> | undefined {
  try {
    return parseConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`skein: ${err.message}\n`);
      return undefined;
    }
    throw err;
  }
}

/** `skein proxy --cleanup`: what an uninstall (or a test) runs to leave no kernel state behind. */
function cleanup(): number {
  const config = readConfig();
  if (config === undefined) return 1;
  const removed = cleanupKernel(config.bpffsDir);
  process.stdout.write(`skein: removed ${removed.length} pinned object(s) under ${config.bpffsDir}\n`);
  return 0;
}

/**
 * Every proxied connection holds one or two sockets, and a node carries
 * thousands: the soft open-files limit (often 1024) goes up to the hard one,
 * as ztunnel does at start (istio/ztunnel#1586, src/main.rs, for #1585:
 * "ztunnel runs out of file descriptors on heavily loaded nodes").
 */
function raiseOpenFiles(log: ReturnType<typeof createLogger>): void {
  try {
    const l = raiseNofileLimit();
    log.info({ scope: 'app', before: l.before, soft: l.soft, hard: l.hard }, 'open files limit');
  } catch (err) {
    log.warn({ scope: 'app', err: (err as Error).message }, 'cannot raise the open files limit');
  }
}

async function proxy(): Promise<number> {
  const config = readConfig();
  if (config === undefined) return 1;
  const log = createLogger(config.logLevel, config.logFormat, process.stderr, config.logTargets);
  // tracing takes any word as a target, so a typo (`warning`) is one; say that it names nothing here.
  const known = knownScopes(log);
  const idle = Object.keys(config.logTargets).filter((t) => !known.has(t));
  if (idle.length > 0) scoped(log, 'app').warn({ targets: idle.join(','), known: [...known].sort().join(',') }, 'RUST_LOG names targets Skein has no logs for; they change nothing');
  // From here an error nothing caught is logged and counted, never fatal.
  const policy = installProcessPolicy(log);
  raiseOpenFiles(log);
  let app;
  try {
    app = await startApp(config, log, { onShutdownRequest: () => { void stop('quitquitquit'); } });
  } catch (err) {
    if (err instanceof StartupError || (err as { code?: string }).code?.startsWith('SKEIN_') === true) {
      process.stderr.write(`skein: cannot start: ${(err as Error).message}\n`);
      return 1;
    }
    throw err;
  }
  policy.attach(app.metrics.registry);
  // Node's compile cache (NODE_COMPILE_CACHE, which bin/skein sets) is
  // otherwise written only at a clean exit; write it now, with all that the
  // start compiled, so that the next start finds it even if this daemon is
  // killed. Without a cache this does nothing.
  flushCompileCache();
  const stopRelease = startMemoryRelease(log);
  const done = Promise.withResolvers<number>();
  const stop = async (why: string): Promise<void> => {
    log.info({ scope: 'app', why }, 'shutting down');
    stopRelease();
    await app.shutdown();
    done.resolve(0);
  };
  process.once('SIGTERM', () => { void stop('SIGTERM'); });
  process.once('SIGINT', () => { void stop('SIGINT'); });
  return done.promise;
}

function main(argv: readonly string[]): number | Promise<number> {
  let cmd;
  try {
    cmd = parseArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`skein: ${err.message}`);
      return 2;
    }
    throw err;
  }
  switch (cmd.kind) {
    case 'help':
      process.stdout.write(usage);
      return 0;
    case 'proxy':
      return cmd.cleanup ? cleanup() : proxy();
    case 'version': {
      const facts = { skein: version, node: process.versions.node, libbpf: libbpfVersion() };
      process.stdout.write(cmd.json ? `${JSON.stringify(facts)}\n` : `skein ${facts.skein} (node ${facts.node}, libbpf ${facts.libbpf})\n`);
      return 0;
    }
    case 'waypoint':
      return waypoint(cmd);
  }
}

// Loaded on demand: the Kubernetes client is not part of the proxy's start-up.
async function waypoint(cmd: WaypointCommand): Promise<number> {
  const { runWaypoint, WaypointClusterError } = await import('@skein/waypoint/cli');
  try {
    return await runWaypoint(cmd, { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) });
  } catch (err) {
    if (err instanceof WaypointClusterError) {
      process.stderr.write(`skein: waypoint: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

process.exitCode = await main(process.argv.slice(2));
