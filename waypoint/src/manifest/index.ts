// SPDX-License-Identifier: Apache-2.0
export * from './constants.ts';
export { generateWaypoint, toYaml } from './generate.ts';
export { waypointGateway } from './gateway.ts';
export { enrollNamespacePatch } from './namespace.ts';
export { PROXY_PROTOCOL_FILTER_NAME, PROXY_PROTOCOL_TYPE_URL, proxyProtocolListenerFilter } from './proxy-protocol-filter.ts';
export { envoyFilterName, sandwichEnvoyFilter, sandwichGateway } from './sandwich.ts';
export { TRAFFIC_TYPES, type KubeObject, type ObjectMeta, type TrafficType, type WaypointSpec } from './types.ts';
