// SPDX-License-Identifier: Apache-2.0
// Names Istio gives meaning to, in one place (istio.io labels and annotations,
// Gateway API and EnvoyFilter groups), and the names Skein chooses itself.
export const GATEWAY_API_VERSION = 'gateway.networking.k8s.io/v1';
export const ENVOY_FILTER_API_VERSION = 'networking.istio.io/v1alpha3';

/** istiod's own waypoint class: Envoy with an HBONE listener. */
export const WAYPOINT_CLASS = 'istio-waypoint';
/** istiod's Envoy gateway class, used for the sandwiched variant. */
export const ENVOY_GATEWAY_CLASS = 'istio';

export const HBONE_PORT = 15008;
/** Where the sandwiched gateway takes PROXY v2 from the ztunnel on its node. */
export const PROXY_PORT = 15088;

export const LABEL_WAYPOINT_FOR = 'istio.io/waypoint-for';
export const LABEL_USE_WAYPOINT = 'istio.io/use-waypoint';
export const LABEL_REVISION = 'istio.io/rev';
export const LABEL_DATAPLANE_MODE = 'istio.io/dataplane-mode';
/** Istio's gateway deployment controller puts this label on the gateway's pods. */
export const LABEL_GATEWAY_NAME = 'gateway.networking.k8s.io/gateway-name';
/** Marks what `skein waypoint` made, so `list` and `delete` can find it again. */
export const LABEL_SKEIN_WAYPOINT = 'skein.io/waypoint';

export const ANNOTATION_INBOUND_BINDING = 'ambient.istio.io/waypoint-inbound-binding';
export const ANNOTATION_SERVICE_TYPE = 'networking.istio.io/service-type';

/** Field manager for server-side apply. */
export const FIELD_MANAGER = 'skein';

/** Dynamic metadata the sandwiched Envoy gets from the PROXY v2 TLVs. */
export const METADATA_NAMESPACE = 'skein.io/proxy_protocol';
export const METADATA_KEY_PEER = 'peer_principal';
export const METADATA_KEY_SERVICE = 'service_hostname';
