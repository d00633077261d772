// SPDX-License-Identifier: Apache-2.0
// Everything `skein waypoint generate|apply` produces for one waypoint, in
// apply order, and its YAML form. Pure: no cluster, no files.
import { stringify } from 'yaml';
import { waypointGateway } from './gateway.ts';
import { enrollNamespacePatch } from './namespace.ts';
import { sandwichEnvoyFilter, sandwichGateway } from './sandwich.ts';
import type { KubeObject, WaypointSpec } from './types.ts';

export function generateWaypoint(spec: WaypointSpec): KubeObject[] {
  const objects = spec.sandwich ? [sandwichGateway(spec), sandwichEnvoyFilter(spec)] : [waypointGateway(spec)];
  // The namespace goes last: label it only once its waypoint exists.
  if (spec.enrollNamespace) objects.push(enrollNamespacePatch(spec.namespace, spec.name));
  return objects;
}

/** Multi-document YAML, one document per object, each ending in a newline. */
export function toYaml(objects: readonly KubeObject[]): string {
  return objects.map((o) => stringify(o, { lineWidth: 0 })).join('---\n');
}
