/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The maps shared by Skein's eBPF programs (bpf/progs/) and the daemon
 * (ztunnel-compat/src/accel/). This header is the one declaration of their
 * layouts: accel/layout.ts mirrors it, and a test compiles this file to check
 * every size and offset the TypeScript side uses.
 *
 * Addresses and ports are in network byte order, as the kernel hands them to
 * cgroup/connect4. Every struct is padded explicitly so that C and
 * TypeScript agree without relying on the compiler's layout rules.
 */
#ifndef SKEIN_MAPS_H
#define SKEIN_MAPS_H

/* eBPF programs get the types from vmlinux.h (CO-RE); everything else from the UAPI. */
#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* istio-cni skips sockets with this mark under this mask: ztunnel's own, and ours. */
#define SKEIN_INPOD_MARK 0x539
#define SKEIN_INPOD_MARK_MASK 0xfff

#define SKEIN_MAX_PODS 4096
#define SKEIN_MAX_SERVICES 8192
#define SKEIN_MAX_ENDPOINTS 32
#define SKEIN_MAX_FLOWS 65536
#define SKEIN_EVENTS_BYTES (1 << 20)
#define SKEIN_MAX_LOCAL 4096
#define SKEIN_MAX_AUTHZ 65536
#define SKEIN_MAX_SOCKS 65536

/* skein_pods: enrolled pods on this node, by netns cookie. */
struct skein_pod {
	__u32 pod_id;	/* the daemon's handle for telemetry */
	__u32 flags;	/* reserved */
};

/*
 * skein_local: enrolled workloads on this node, by IPv4 (network order): the
 * destinations of the same-node fast path.
 */
struct skein_local {
	__u64 netns_cookie;
	__u32 pod_id;
	__u32 flags;	/* reserved */
};

/*
 * skein_authz: the destination's authorization verdict for a source pod,
 * decided in userspace by decide/authz.ts for policies that depend on the
 * source identity only. No entry: the kernel cannot decide; userspace does.
 */
struct skein_authz_key {
	__u32 src_pod;
	__u32 dst_pod;
};

#define SKEIN_AUTHZ_ALLOW 1
#define SKEIN_AUTHZ_DENY 2

/*
 * skein_approved: same-node flows approved at connect time, by the client's
 * address and the destination pod's; the destination's sk_lookup program
 * admits only these past its capture. Written by our programs only.
 *
 * The client's address alone does not name one flow: Linux lets connects to
 * different destinations share an ephemeral port, so the same client
 * address may at once be approved for one pod and be on its way to another
 * (or to its own pod's outbound capture).
 */
struct skein_flow_key {
	__u32 ip;	/* client IPv4, network order */
	__u32 port;	/* client port, host order */
	__u32 dst_ip;	/* destination pod IPv4, network order */
};

struct skein_approval {
	__u64 dst_netns;
	__u32 dst_port;	/* the port the client dialled, host order */
	__u32 admitted;	/* set by sk_lookup once it handed the SYN to the app */
};

/* skein_listeners (SOCKHASH): enrolled pods' listening sockets. */
struct skein_listen_key {
	__u64 netns_cookie;
	__u32 port;	/* host order */
	__u32 pad;
};

/* skein_services: key. */
struct skein_svc_key {
	__u32 vip;	/* IPv4, network order */
	__u16 port;	/* network order */
	__u16 pad;
};

struct skein_endpoint {
	__u32 ip;	/* IPv4, network order */
	__u16 port;	/* target port, network order */
	__u16 pad;
	__u32 weight;	/* capacity; 0 never chosen */
};

/* The service is passed through to its VIP as dialled (load balancing mode PASSTHROUGH). */
#define SKEIN_SVC_PASSTHROUGH 0x1

/*
 * skein_services: value. The candidates are the ones decide/lb.ts would pick
 * from (healthy, best locality tier, protocol NONE), the same for every
 * enrolled pod on the node; anything else is not in this map and goes to
 * userspace.
 */
struct skein_service {
	__u32 svc_id;
	__u16 count;
	__u16 flags;
	__u32 total_weight;
	__u32 pad;
	struct skein_endpoint eps[SKEIN_MAX_ENDPOINTS];
};

/* skein_flows: connections the kernel steered, by socket cookie, until they close. */
struct skein_flow {
	__u64 start_ns;
	__u32 pod_id;
	__u32 svc_id;
	__u32 orig_ip;	/* what the app dialled */
	__u32 dst_ip;	/* where it goes */
	__u16 orig_port;
	__u16 dst_port;
	__u32 established;
	__u64 dst_netns;	/* same-node flows: the destination pod's netns; else 0 */
	__u32 dst_pod;		/* same-node flows: its pod id */
	__u32 pad;
};

enum skein_event_kind {
	SKEIN_EV_OPEN = 1,
	SKEIN_EV_CLOSE = 2,
	SKEIN_EV_FAIL = 3,	/* closed before it was established */
};

/* skein_events: ring buffer records. */
struct skein_event {
	__u32 kind;
	__u32 pod_id;
	__u32 svc_id;
	__u32 src_ip;
	__u32 orig_ip;
	__u32 dst_ip;
	__u16 src_port;	/* host order (sock_ops local_port) */
	__u16 orig_port;
	__u16 dst_port;
	__u16 pad;
	__u64 cookie;
	__u64 bytes_sent;
	__u64 bytes_recv;
	__u64 duration_ns;
	__u32 dst_pod;	/* same-node flows: the destination pod; else 0 */
	__u32 pad2;
};

/* skein_stats: per-CPU counters, by index. */
enum skein_stat {
	SKEIN_STAT_LB_REWRITE = 0,	/* connects steered to an endpoint */
	SKEIN_STAT_PASSTHROUGH = 1,	/* connects let out uncaptured to the VIP */
	SKEIN_STAT_FLOWS_FULL = 2,	/* flow table full: left to userspace */
	SKEIN_STAT_EVENTS_LOST = 3,	/* ring buffer full: an event was dropped */
	SKEIN_STAT_NO_ENDPOINT = 4,	/* nothing to pick: left to userspace */
	SKEIN_STAT_SAME_NODE = 5,	/* connects approved for the same-node fast path */
	SKEIN_STAT_DENIED = 6,		/* connects refused by in-kernel authorization */
	SKEIN_STAT_ADMITTED = 7,	/* approved flows the destination's sk_lookup let in */
	SKEIN_STAT_NO_LISTENER = 8,	/* approved, but no known listener: left to the capture */
	SKEIN_STAT_OTHER_FLOW = 9,	/* an approved client address on another flow to the pod: left to the capture */
	SKEIN_STAT_MAX = 16,
};

#endif /* SKEIN_MAPS_H */
