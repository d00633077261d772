// SPDX-License-Identifier: Apache-2.0
// The stock waypoint: the Gateway `istioctl waypoint generate` writes, which
// istiod turns into an Envoy Deployment with an HBONE listener on 15008.
import { GATEWAY_API_VERSION, HBONE_PORT, LABEL_REVISION, LABEL_WAYPOINT_FOR, WAYPOINT_CLASS } from './constants.ts';
import type { KubeObject, WaypointSpec } from './types.ts';

export function waypointGateway(spec: WaypointSpec): KubeObject {
  return {
    apiVersion: GATEWAY_API_VERSION,
    kind: 'Gateway',
    metadata: {
      name: spec.name,
      namespace: spec.namespace,
      labels: gatewayLabels(spec),
    },
    spec: {
      gatewayClassName: WAYPOINT_CLASS,
      listeners: [{ name: 'mesh', port: HBONE_PORT, protocol: 'HBONE' }],
    },
  };
}

/** Labels shared by both variants: the traffic type, and the revision when given. */
export function gatewayLabels(spec: WaypointSpec): Record<string, string> {
  const labels: Record<string, string> = { [LABEL_WAYPOINT_FOR]: spec.trafficType };
  if (spec.revision !== undefined) labels[LABEL_REVISION] = spec.revision;
  return labels;
}
