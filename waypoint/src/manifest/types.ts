// SPDX-License-Identifier: Apache-2.0
// The shape every generated Kubernetes object has: enough for server-side
// apply and for YAML output, with the body left open.
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec?: Record<string, unknown>;
}

export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** Which traffic a waypoint takes: Istio's `istio.io/waypoint-for` values. */
export const TRAFFIC_TYPES = ['service', 'workload', 'all'] as const;
export type TrafficType = (typeof TRAFFIC_TYPES)[number];

/** What `skein waypoint generate|apply` is asked to produce. */
export interface WaypointSpec {
  name: string;
  namespace: string;
  trafficType: TrafficType;
  /** A sandwiched Envoy gateway (class `istio`, PROXY on 15088) instead of `istio-waypoint`. */
  sandwich: boolean;
  /** Also label the namespace `istio.io/use-waypoint: <name>`. */
  enrollNamespace: boolean;
  /** Istio revision (`istio.io/rev`), when not the default one. */
  revision?: string | undefined;
}
