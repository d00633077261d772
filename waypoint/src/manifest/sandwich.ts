// SPDX-License-Identifier: Apache-2.0
// The sandwiched waypoint: an ordinary Istio Envoy gateway (class `istio`)
// whose pods are in the mesh. The inbound-binding annotation tells istiod to
// give those pods `application_tunnel {PROXY, 15088}` in WDS, so the ztunnel on
// their node terminates HBONE and hands the stream over with a PROXY v2
// header; an EnvoyFilter makes the 15088 listener read that header.
import {
  ANNOTATION_INBOUND_BINDING, ANNOTATION_SERVICE_TYPE, ENVOY_FILTER_API_VERSION, ENVOY_GATEWAY_CLASS,
  GATEWAY_API_VERSION, LABEL_DATAPLANE_MODE, LABEL_GATEWAY_NAME, LABEL_SKEIN_WAYPOINT, PROXY_PORT,
} from './constants.ts';
import { gatewayLabels } from './gateway.ts';
import { proxyProtocolListenerFilter } from './proxy-protocol-filter.ts';
import type { KubeObject, WaypointSpec } from './types.ts';

export function sandwichGateway(spec: WaypointSpec): KubeObject {
  return {
    apiVersion: GATEWAY_API_VERSION,
    kind: 'Gateway',
    metadata: {
      name: spec.name,
      namespace: spec.namespace,
      labels: gatewayLabels(spec),
      annotations: {
        [ANNOTATION_INBOUND_BINDING]: `PROXY/${PROXY_PORT}`,
        // A waypoint is reached inside the cluster only; no cloud load balancer.
        [ANNOTATION_SERVICE_TYPE]: 'ClusterIP',
      },
    },
    spec: {
      gatewayClassName: ENVOY_GATEWAY_CLASS,
      // The gateway's pods must be captured, so that ztunnel is their inbound.
      infrastructure: { labels: { [LABEL_DATAPLANE_MODE]: 'ambient' } },
      // Plain HTTP on 15088: what Envoy serves once the PROXY header is read.
      // Istio 1.22-1.26 allow only same-namespace use for a gateway without an
      // HBONE listener; 1.27 also reads allowedRoutes from an `istio.io/PROXY`
      // listener, which class `istio` does not serve (docs/waypoints.md).
      listeners: [{ name: 'proxy', port: PROXY_PORT, protocol: 'HTTP', allowedRoutes: { namespaces: { from: 'Same' } } }],
    },
  };
}

export function envoyFilterName(waypoint: string): string {
  return `${waypoint}-proxy-protocol`;
}

export function sandwichEnvoyFilter(spec: WaypointSpec): KubeObject {
  return {
    apiVersion: ENVOY_FILTER_API_VERSION,
    kind: 'EnvoyFilter',
    metadata: {
      name: envoyFilterName(spec.name),
      namespace: spec.namespace,
      labels: { [LABEL_SKEIN_WAYPOINT]: spec.name },
    },
    spec: {
      // A label selector works on every Istio release that has the Gateway API
      // deployment controller; EnvoyFilter targetRefs came later.
      workloadSelector: { labels: { [LABEL_GATEWAY_NAME]: spec.name } },
      configPatches: [{
        applyTo: 'LISTENER_FILTER',
        match: { context: 'GATEWAY', listener: { portNumber: PROXY_PORT } },
        // First, before any filter that peeks at the bytes the header occupies.
        patch: { operation: 'INSERT_FIRST', value: proxyProtocolListenerFilter() },
      }],
    },
  };
}
