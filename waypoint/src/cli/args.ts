// SPDX-License-Identifier: Apache-2.0
// Argument parsing for `skein waypoint ...`: pure, so tests can pin every
// message. Each action accepts only the flags that mean something to it.
import { TRAFFIC_TYPES, type TrafficType } from '../manifest/types.ts';

export type WaypointCommand =
  | { kind: 'waypoint'; action: 'help' }
  | { kind: 'waypoint'; action: 'generate'; options: ApplyOptions }
  | { kind: 'waypoint'; action: 'apply'; options: ApplyOptions; dryRun: boolean }
  | { kind: 'waypoint'; action: 'list'; namespace?: string | undefined; allNamespaces: boolean }
  | { kind: 'waypoint'; action: 'status'; name: string; namespace?: string | undefined }
  | { kind: 'waypoint'; action: 'delete'; name: string; namespace?: string | undefined; sandwich: boolean; dryRun: boolean };

/** `generate` and `apply`; the namespace stays unset until the kubeconfig can supply it. */
export interface ApplyOptions {
  name: string;
  namespace?: string | undefined;
  trafficType: TrafficType;
  sandwich: boolean;
  enrollNamespace: boolean;
  revision?: string | undefined;
}

export class WaypointUsageError extends Error {
  override name = 'WaypointUsageError';
  readonly code = 'SKEIN_WAYPOINT_USAGE';
}

export const DEFAULT_WAYPOINT_NAME = 'waypoint';

export const waypointUsage = `Usage: skein waypoint <action> [options]

Actions:
  generate   print the waypoint's Kubernetes objects as YAML
  apply      server-side apply them (field manager "skein")
  list       list waypoints (Gateways of class istio-waypoint, or with the inbound-binding annotation)
  status     print a waypoint Gateway's Programmed condition and addresses
  delete     delete a waypoint Gateway (and the EnvoyFilter of a sandwiched one)

Options:
  --name N                    waypoint name (default "waypoint")
  -n, --namespace NS          namespace (default: the kubeconfig context's; "default" for generate)
  --for service|workload|all  traffic the waypoint takes (default "service"; generate, apply)
  --sandwich                  an Envoy gateway (class istio) fed PROXY v2 on 15088 by ztunnel (generate, apply, delete)
  --enroll-namespace          also label the namespace istio.io/use-waypoint=<name> (generate, apply)
  -r, --revision R            Istio revision label istio.io/rev (generate, apply)
  --dry-run                   print what would change and send no writes (apply, delete)
  -A, --all-namespaces        list in every namespace (list)
`;

type Flag = 'name' | 'namespace' | 'for' | 'sandwich' | 'enroll-namespace' | 'revision' | 'dry-run' | 'all-namespaces';

const VALUE_FLAGS: ReadonlySet<Flag> = new Set(['name', 'namespace', 'for', 'revision']);
const ALIASES: Readonly<Record<string, Flag>> = { '-n': 'namespace', '-r': 'revision', '-A': 'all-namespaces' };
const ALLOWED: Readonly<Record<'generate' | 'apply' | 'list' | 'status' | 'delete', readonly Flag[]>> = {
  generate: ['name', 'namespace', 'for', 'sandwich', 'enroll-namespace', 'revision'],
  apply: ['name', 'namespace', 'for', 'sandwich', 'enroll-namespace', 'revision', 'dry-run'],
  list: ['namespace', 'all-namespaces'],
  status: ['name', 'namespace'],
  delete: ['name', 'namespace', 'sandwich', 'dry-run'],
};

// RFC 1123 label: what Kubernetes requires of namespace names and what
// istiod's generated Deployment and Service need of a Gateway name.
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
// A label value (istio.io/rev).
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;

/** `argv` is what follows `skein waypoint`. */
export function parseWaypointArgs(argv: readonly string[]): WaypointCommand {
  const [action, ...rest] = argv;
  switch (action) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      if (rest.length > 0) fail(`waypoint ${action ?? 'help'}: unexpected argument '${rest[0] ?? ''}'`);
      return { kind: 'waypoint', action: 'help' };
    case 'generate':
    case 'apply':
    case 'list':
    case 'status':
    case 'delete':
      break;
    default:
      fail(`waypoint: unknown action '${action}'`);
  }
  const flags = parseFlags(action, rest);
  const name = checkName('name', flags.get('name') ?? DEFAULT_WAYPOINT_NAME);
  const nsFlag = flags.get('namespace');
  const namespace = nsFlag === undefined ? undefined : checkName('namespace', nsFlag);
  const sandwich = flags.has('sandwich');
  const dryRun = flags.has('dry-run');
  switch (action) {
    case 'generate':
    case 'apply': {
      const forFlag = flags.get('for') ?? 'service';
      if (!isTrafficType(forFlag)) fail(`waypoint ${action}: --for must be one of ${TRAFFIC_TYPES.join(', ')}, not '${forFlag}'`);
      const revision = flags.get('revision');
      if (revision !== undefined && (revision === '' || !LABEL_VALUE.test(revision))) fail(`waypoint ${action}: --revision '${revision}' is not a valid label value`);
      const options: ApplyOptions = { name, namespace, trafficType: forFlag, sandwich, enrollNamespace: flags.has('enroll-namespace'), revision };
      return action === 'generate' ? { kind: 'waypoint', action, options } : { kind: 'waypoint', action, options, dryRun };
    }
    case 'list':
      if (namespace !== undefined && flags.has('all-namespaces')) fail('waypoint list: --namespace and --all-namespaces exclude each other');
      return { kind: 'waypoint', action, namespace, allNamespaces: flags.has('all-namespaces') };
    case 'status':
      return { kind: 'waypoint', action, name, namespace };
    case 'delete':
      return { kind: 'waypoint', action, name, namespace, sandwich, dryRun };
  }
}

function parseFlags(action: keyof typeof ALLOWED, args: readonly string[]): Map<Flag, string> {
  const out = new Map<Flag, string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? '';
    let flag: Flag | undefined;
    let value: string | undefined;
    const alias = ALIASES[arg];
    if (alias !== undefined) {
      flag = alias;
    } else if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const flagName = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      if (eq >= 0) value = arg.slice(eq + 1);
      flag = ALLOWED.apply.concat(ALLOWED.list).find((f) => f === flagName);
    }
    if (flag === undefined) fail(arg.startsWith('-') ? `waypoint ${action}: unknown flag '${arg}'` : `waypoint ${action}: unexpected argument '${arg}'`);
    if (!ALLOWED[action].includes(flag)) fail(`waypoint ${action}: flag '--${flag}' does not apply here`);
    if (out.has(flag)) fail(`waypoint ${action}: '--${flag}' given twice`);
    if (VALUE_FLAGS.has(flag)) {
      if (value === undefined) {
        value = args[i + 1];
        if (value === undefined || value.startsWith('-')) fail(`waypoint ${action}: '--${flag}' needs a value`);
        i++;
      }
    } else if (value !== undefined) {
      fail(`waypoint ${action}: '--${flag}' takes no value`);
    }
    out.set(flag, value ?? '');
  }
  return out;
}

function checkName(what: string, value: string): string {
  if (!DNS_LABEL.test(value)) fail(`waypoint: --${what} '${value}' is not a valid name (lower-case letters, digits and '-', at most 63)`);
  return value;
}

function isTrafficType(s: string): s is TrafficType {
  return (TRAFFIC_TYPES as readonly string[]).includes(s);
}

function fail(message: string): never {
  throw new WaypointUsageError(message);
}
