// SPDX-License-Identifier: Apache-2.0
// Entry point of the `skein` command.
import { libbpfVersion } from '@skein/bpf';
import { parseArgs, usage, UsageError } from './cli.ts';
import { version } from './version.ts';

function main(argv: readonly string[]): number {
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
    case 'version': {
      const facts = { skein: version, node: process.versions.node, libbpf: libbpfVersion() };
      process.stdout.write(cmd.json ? `${JSON.stringify(facts)}\n` : `skein ${facts.skein} (node ${facts.node}, libbpf ${facts.libbpf})\n`);
      return 0;
    }
  }
}

process.exitCode = main(process.argv.slice(2));
