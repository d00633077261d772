// SPDX-License-Identifier: Apache-2.0
// Static config, structure-aware: random bytes rarely stay valid YAML, so
// here the input is a program of edits to a valid document (the sample of
// xds/local.test.ts), two bytes each: which node (every mapping, list and
// value in the document), and what to do there (put a boundary value from
// POOL, delete it, duplicate it, add an unknown key). The edited document
// goes through parseLocalConfig and applyLocalConfig as in static-config.ts,
// so coverage guidance explores the field conversions rather than the YAML
// parser. Declared error: LocalConfigError.
import { staticConfigSection } from '@skein/ztunnel-compat/admin/config-dump';
import { ProxyState } from '@skein/ztunnel-compat/state/store';
import { ProxyStateUpdater } from '@skein/ztunnel-compat/state/updater';
import { STATIC_WORKLOAD_DEFAULTS } from '@skein/ztunnel-compat/state/workload';
import { applyLocalConfig, LocalConfigError, parseLocalConfig } from '@skein/ztunnel-compat/xds/local';
import type { FuzzTarget } from '../target.ts';
import { SAMPLE } from './xds-common.ts';

/** Values at the edges of what the fields take, and values of the wrong type. */
const POOL: readonly unknown[] = [
  null, true, false, 0, -1, 1.5, 80, 65535, 65536, 2 ** 32, 2 ** 53 + 2, Number.NaN, Number.POSITIVE_INFINITY, -0,
  '', ' ', 'a', 'x'.repeat(300), '0', '65536', '-1', '::1', '::ffff:10.0.0.1', '10.0.0.1', '256.0.0.1', '10.0.0.0/33', '::/129', '10.0.0.0/-1',
  '/10.0.0.1', '/', 'ns/', '/ns/host', 'ns/host.example', 'default/example.com', 'Kubernetes//Pod/default/x',
  'TCP', 'HBONE', 'Allow', 'Deny', 'Global', 'Namespace', 'WorkloadSelector', 'Node', 'Zone', 'Failover', 'Strict', 'Exact', 'Prefix', 'Presence',
  {}, [], [[]], [[[]]], [[[{}]]], { 80: 8080 }, { '0': 0 }, { x: 'y' }, ['10.0.0.1'], [{ Exact: '' }], [{ Presence: null }], { destination: '' },
];

type Container = Record<string, unknown> | unknown[];
interface Slot { parent: Container; key: string | number }

function clone<T>(x: T): T {
  return structuredClone(x);
}

function slots(node: unknown, out: Slot[]): Slot[] {
  if (node === null || typeof node !== 'object') return out;
  const c = node as Container;
  for (const key of Array.isArray(c) ? c.keys() : Object.keys(c)) {
    out.push({ parent: c, key });
    slots((c as Record<string | number, unknown>)[key], out);
  }
  return out;
}

function edit(doc: Record<string, unknown>, where: number, what: number): void {
  const all = slots(doc, []);
  const slot = all[where % all.length];
  if (slot === undefined) return;
  const parent = slot.parent as Record<string | number, unknown>;
  const op = what % 8;
  if (op === 0) {
    if (Array.isArray(slot.parent)) slot.parent.splice(slot.key as number, 1);
    else Reflect.deleteProperty(parent, slot.key);
  } else if (op === 1) {
    if (Array.isArray(slot.parent)) slot.parent.push(clone(parent[slot.key]));
    else parent[`${String(slot.key)}x`] = clone(parent[slot.key]);
  } else {
    parent[slot.key] = clone(POOL[what % POOL.length]);
  }
}

export const target: FuzzTarget = {
  name: 'static-config-doc',
  parser: 'xds/local.ts parseLocalConfig + applyLocalConfig (edited documents)',
  maxLen: 64,
  declared: [LocalConfigError],
  seeds: () => [Buffer.alloc(0), Buffer.from([3, 9]), Buffer.from([40, 2, 7, 60])],
  run(data) {
    const doc = clone(SAMPLE) as unknown as Record<string, unknown>;
    for (let i = 0; i + 1 < data.length; i += 2) edit(doc, data[i] ?? 0, data[i + 1] ?? 0);
    const cfg = parseLocalConfig(doc);
    const state = new ProxyState();
    const updater = new ProxyStateUpdater(state, { workloadDefaults: STATIC_WORKLOAD_DEFAULTS });
    applyLocalConfig(cfg, { address: updater.addressHandler, authorization: updater.authorizationHandler });
    JSON.stringify({ ...state.configDump(), staticConfig: staticConfigSection(cfg.document) });
  },
};
