// SPDX-License-Identifier: Apache-2.0
// Carries out a parsed `skein waypoint` command: generation is pure
// (manifest/), the cluster is reached only through `Cluster`.
import { ANNOTATION_INBOUND_BINDING, ENVOY_FILTER_API_VERSION, GATEWAY_API_VERSION } from '../manifest/constants.ts';
import { generateWaypoint, toYaml } from '../manifest/generate.ts';
import { envoyFilterName } from '../manifest/sandwich.ts';
import type { KubeObject, WaypointSpec } from '../manifest/types.ts';
import { waypointUsage, type ApplyOptions, type WaypointCommand } from './args.ts';
import { connectCluster, describe, type Cluster } from './cluster.ts';
import { formatList, formatStatus, isWaypoint } from './report.ts';

export interface WaypointIo {
  out(text: string): void;
  err(text: string): void;
  /** Defaults to the kubeconfig's cluster; opened only for actions that need one. */
  cluster?: () => Cluster;
}

/** Runs the command; resolves to the process exit code. */
export async function runWaypoint(cmd: WaypointCommand, io: WaypointIo): Promise<number> {
  const cluster = (): Cluster => (io.cluster ?? connectCluster)();
  switch (cmd.action) {
    case 'help':
      io.out(waypointUsage);
      return 0;
    case 'generate':
      // No cluster needed: without --namespace the objects go to "default".
      io.out(toYaml(generateWaypoint(specOf(cmd.options, 'default'))));
      return 0;
    case 'apply': {
      const c = cluster();
      const objects = generateWaypoint(specOf(cmd.options, c.defaultNamespace));
      if (cmd.dryRun) {
        for (const obj of objects) {
          const now = await c.read(obj.apiVersion, obj.kind, obj.metadata.namespace, obj.metadata.name);
          io.out(`# dry run: would ${now === undefined ? 'create' : 'update'} ${describe(obj)} (server-side apply, field manager skein)\n`);
        }
        io.out(toYaml(objects));
        return 0;
      }
      for (const obj of objects) {
        await c.apply(obj);
        io.out(`applied ${describe(obj)}\n`);
      }
      return 0;
    }
    case 'list': {
      const c = cluster();
      const ns = cmd.allNamespaces ? undefined : cmd.namespace ?? c.defaultNamespace;
      const waypoints = (await c.list(GATEWAY_API_VERSION, 'Gateway', ns)).filter(isWaypoint);
      if (waypoints.length === 0) {
        io.out(ns === undefined ? 'no waypoints found\n' : `no waypoints found in namespace ${ns}\n`);
        return 0;
      }
      io.out(formatList(waypoints));
      return 0;
    }
    case 'status': {
      const c = cluster();
      const ns = cmd.namespace ?? c.defaultNamespace;
      const gw = await c.read(GATEWAY_API_VERSION, 'Gateway', ns, cmd.name);
      if (gw === undefined) {
        io.err(`skein: waypoint ${ns}/${cmd.name} not found\n`);
        return 1;
      }
      io.out(formatStatus(gw));
      return 0;
    }
    case 'delete': {
      const c = cluster();
      const ns = cmd.namespace ?? c.defaultNamespace;
      const gw = await c.read(GATEWAY_API_VERSION, 'Gateway', ns, cmd.name);
      const sandwich = cmd.sandwich || gw?.metadata?.annotations?.[ANNOTATION_INBOUND_BINDING] !== undefined;
      const targets: KubeObject[] = [];
      if (gw !== undefined) targets.push({ apiVersion: GATEWAY_API_VERSION, kind: 'Gateway', metadata: { name: cmd.name, namespace: ns } });
      if (sandwich) targets.push({ apiVersion: ENVOY_FILTER_API_VERSION, kind: 'EnvoyFilter', metadata: { name: envoyFilterName(cmd.name), namespace: ns } });
      if (gw === undefined && !sandwich) {
        io.err(`skein: waypoint ${ns}/${cmd.name} not found\n`);
        return 1;
      }
      let gone = 0;
      for (const t of targets) {
        const { namespace = ns, name } = t.metadata;
        if (cmd.dryRun) {
          io.out(`dry run: would delete ${describe(t)}\n`);
        } else if (await c.delete(t.apiVersion, t.kind, namespace, name)) {
          io.out(`deleted ${describe(t)}\n`);
          gone++;
        } else {
          io.out(`${describe(t)} was already gone\n`);
        }
      }
      return cmd.dryRun || gone > 0 ? 0 : 1;
    }
  }
}

function specOf(o: ApplyOptions, defaultNamespace: string): WaypointSpec {
  return {
    name: o.name,
    namespace: o.namespace ?? defaultNamespace,
    trafficType: o.trafficType,
    sandwich: o.sandwich,
    enrollNamespace: o.enrollNamespace,
    revision: o.revision,
  };
}
