// SPDX-License-Identifier: Apache-2.0
// A fresh machine's /sys/fs/bpf, without touching this one's: a command run
// through `withoutBpffs` gets a private mount namespace in which whatever is
// mounted on /sys/fs/bpf is unmounted, leaving sysfs's bare directory as a
// new machine has it. Its mounts (a bpffs the daemon mounts, say) die with it.

/**
 * The command line that runs `cmd args` with no bpffs mounted (needs root),
 * after the shell command `before`. It execs into `cmd`: the PID is its own.
 */
export function withoutBpffs(cmd: string, args: readonly string[], before = ':'): { cmd: string; args: string[] } {
  const bare = `while umount /sys/fs/bpf 2>/dev/null; do :; done; ${before}; exec "$0" "$@"`;
  return { cmd: 'unshare', args: ['--mount', '--propagation', 'private', 'sh', '-c', bare, cmd, ...args] };
}
