// SPDX-License-Identifier: Apache-2.0
// Argument parsing for `skein`: pure, so that tests can pin every message.
import { parseWaypointArgs, waypointUsage, WaypointUsageError, type WaypointCommand } from '@skein/waypoint/args';

export type Command =
  | { kind: 'help' }
  | { kind: 'version'; json: boolean }
  | { kind: 'proxy'; cleanup: boolean }
  | WaypointCommand;

export class UsageError extends Error {
  override name = 'UsageError';
  readonly code = 'SKEIN_USAGE';
}

export const usage = `Usage: skein <command> [options]

Commands:
  proxy              run the node proxy (configured by environment variables, as ztunnel)
  proxy --cleanup    detach and unpin the kernel fast paths' programs and maps, then exit
  version [--json]   print the version of skein and of its kernel addon
  waypoint <action>  generate, apply, list, status or delete waypoints (skein waypoint help)
  help               print this help
`;

export function parseArgs(argv: readonly string[]): Command {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      noExtra(cmd ?? 'help', rest);
      return { kind: 'help' };
    case 'version':
    case '--version': {
      const json = rest.includes('--json');
      noExtra(cmd, rest.filter((a) => a !== '--json'));
      return { kind: 'version', json };
    }
    case 'proxy':
      // Like ztunnel (`ztunnel proxy ztunnel` in its chart), other arguments are ignored.
      return { kind: 'proxy', cleanup: rest.includes('--cleanup') };
    case 'waypoint':
      try {
        return parseWaypointArgs(rest);
      } catch (err) {
        if (err instanceof WaypointUsageError) throw new UsageError(`${err.message}\n\n${waypointUsage}`);
        throw err;
      }
    default:
      throw new UsageError(`unknown command '${cmd}'\n\n${usage}`);
  }
}

function noExtra(cmd: string, rest: readonly string[]): void {
  if (rest.length > 0) throw new UsageError(`${cmd}: unexpected argument '${rest[0] ?? ''}'\n\n${usage}`);
}
