// SPDX-License-Identifier: Apache-2.0
// The fuzz targets, one per parser that takes untrusted input. Loaded lazily
// so that each worker imports only its own target.
import type { FuzzTarget } from '../target.ts';

const loaders: Record<string, () => Promise<{ target: FuzzTarget }>> = {
  'xds-address': () => import('./xds-address.ts'),
  'xds-authorization': () => import('./xds-authorization.ts'),
  'zds': () => import('./zds.ts'),
  'proxy-v2': () => import('./proxy-v2.ts'),
  'hbone-connect': () => import('./hbone-connect.ts'),
  'dns-query': () => import('./dns-query.ts'),
  'static-config': () => import('./static-config.ts'),
  'static-config-doc': () => import('./static-config-doc.ts'),
};

/** Every target's name, in report order. */
export const targetNames: readonly string[] = Object.keys(loaders);

export async function findTarget(name: string): Promise<FuzzTarget> {
  const load = loaders[name];
  if (load === undefined) throw new Error(`no fuzz target '${name}' (targets: ${targetNames.join(', ')})`);
  return (await load()).target;
}
