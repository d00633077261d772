// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Skein's kernel fast paths, attached to the cgroup that holds the pods:
 *
 *   cgroup/connect4  connect-time load balancing: an enrolled pod connecting
 *                    to a service whose endpoints use no tunnel is connected
 *                    straight to the endpoint the daemon's rules would pick,
 *                    and its socket is marked so istio-cni's rules do not
 *                    capture it (no trip through Skein's port 15001).
 *   sockops          telemetry for those connections: open, close, bytes,
 *                    through a ring buffer the daemon turns into istio_tcp_*
 *                    metrics and access-log lines.
 *   sock_release     forgets a steered connect that died before its first
 *                    packet, so the flow table cannot fill with ghosts.
 *
 * Anything these programs cannot decide returns unchanged, to userspace.
 * They never refuse a connect: a full map means "let userspace do it".
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "skein_maps.h"

#define SOL_SOCKET 1
#define SO_MARK 36
#define SOCK_STREAM 1
#define IPPROTO_TCP 6

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SKEIN_MAX_PODS);
	__type(key, __u64);	/* netns cookie */
	__type(value, struct skein_pod);
} skein_pods SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SKEIN_MAX_SERVICES);
	__type(key, struct skein_svc_key);
	__type(value, struct skein_service);
} skein_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SKEIN_MAX_FLOWS);
	__type(key, __u64);	/* socket cookie */
	__type(value, struct skein_flow);
} skein_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, SKEIN_EVENTS_BYTES);
} skein_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SKEIN_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} skein_stats SEC(".maps");

static __always_inline void count(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&skein_stats, &stat);

	if (v)
		*v += 1;
}

/* A capacity-weighted random pick, as decide/lb.ts weightedIndex. */
static __always_inline const struct skein_endpoint *pick(const struct skein_service *svc)
{
	__u32 r, acc = 0;

	if (svc->total_weight == 0)
		return NULL;
	r = bpf_get_prandom_u32() % svc->total_weight;
	for (int i = 0; i < SKEIN_MAX_ENDPOINTS; i++) {
		if (i >= svc->count)
			break;
		acc += svc->eps[i].weight;
		if (r < acc)
			return &svc->eps[i];
	}
	return NULL;
}

SEC("cgroup/connect4")
int skein_connect4(struct bpf_sock_addr *ctx)
{
	struct skein_svc_key key = {};
	const struct skein_endpoint *ep;
	const struct skein_service *svc;
	const struct skein_pod *pod;
	struct skein_flow flow = {};
	__u64 netns, cookie;
	int mark = SKEIN_INPOD_MARK;

	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP)
		return 1;
	netns = bpf_get_netns_cookie(ctx);
	pod = bpf_map_lookup_elem(&skein_pods, &netns);
	if (!pod)
		return 1;	/* not an enrolled pod: not ours */
	key.vip = ctx->user_ip4;
	key.port = (__u16)ctx->user_port;
	svc = bpf_map_lookup_elem(&skein_services, &key);
	if (!svc)
		return 1;	/* userspace decides (HBONE, waypoint, unknown) */

	flow.start_ns = bpf_ktime_get_ns();
	flow.pod_id = pod->pod_id;
	flow.svc_id = svc->svc_id;
	flow.orig_ip = key.vip;
	flow.orig_port = key.port;
	if (svc->flags & SKEIN_SVC_PASSTHROUGH) {
		flow.dst_ip = key.vip;
		flow.dst_port = key.port;
		ep = NULL;
	} else {
		ep = pick(svc);
		if (!ep) {
			count(SKEIN_STAT_NO_ENDPOINT);
			return 1;
		}
		flow.dst_ip = ep->ip;
		flow.dst_port = ep->port;
	}
	/* Track it first: a flow we could not account for stays in userspace. */
	cookie = bpf_get_socket_cookie(ctx);
	if (bpf_map_update_elem(&skein_flows, &cookie, &flow, BPF_NOEXIST)) {
		count(SKEIN_STAT_FLOWS_FULL);
		return 1;
	}
	if (bpf_setsockopt(ctx, SOL_SOCKET, SO_MARK, &mark, sizeof(mark))) {
		bpf_map_delete_elem(&skein_flows, &cookie);
		return 1;
	}
	if (ep) {
		ctx->user_ip4 = ep->ip;
		ctx->user_port = ep->port;
		count(SKEIN_STAT_LB_REWRITE);
	} else {
		count(SKEIN_STAT_PASSTHROUGH);
	}
	return 1;
}

static __always_inline void emit(__u64 cookie, const struct skein_flow *flow, __u32 kind,
				 __u32 src_ip, __u32 src_port, __u64 sent, __u64 recv)
{
	struct skein_event *ev;

	ev = bpf_ringbuf_reserve(&skein_events, sizeof(*ev), 0);
	if (!ev) {
		count(SKEIN_STAT_EVENTS_LOST);
		return;
	}
	ev->kind = kind;
	ev->pod_id = flow->pod_id;
	ev->svc_id = flow->svc_id;
	ev->src_ip = src_ip;
	ev->src_port = (__u16)src_port;
	ev->orig_ip = flow->orig_ip;
	ev->orig_port = flow->orig_port;
	ev->dst_ip = flow->dst_ip;
	ev->dst_port = flow->dst_port;
	ev->pad = 0;
	ev->cookie = cookie;
	ev->bytes_sent = sent;
	ev->bytes_recv = recv;
	ev->duration_ns = bpf_ktime_get_ns() - flow->start_ns;
	bpf_ringbuf_submit(ev, 0);
}

SEC("sockops")
int skein_sockops(struct bpf_sock_ops *skops)
{
	struct skein_flow *flow;
	__u64 cookie;

	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_STATE_CB:
		break;
	default:
		return 1;
	}
	cookie = bpf_get_socket_cookie(skops);
	flow = bpf_map_lookup_elem(&skein_flows, &cookie);
	if (!flow)
		return 1;
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		/* Ask for state changes, to see the close (or the failure). */
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		flow->established = 1;
		emit(cookie, flow, SKEIN_EV_OPEN, skops->local_ip4, skops->local_port, 0, 0);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] != BPF_TCP_CLOSE)
			break;
		emit(cookie, flow, flow->established ? SKEIN_EV_CLOSE : SKEIN_EV_FAIL,
		     skops->local_ip4, skops->local_port, skops->bytes_acked, skops->bytes_received);
		bpf_map_delete_elem(&skein_flows, &cookie);
		break;
	}
	return 1;
}

/*
 * A connect that failed before any packet (no route, say) never reaches the
 * sock_ops callbacks: report it and forget the flow when the app closes the
 * socket. This runs at close(), before TCP's own goodbye.
 */
SEC("cgroup/sock_release")
int skein_sock_release(struct bpf_sock *sk)
{
	struct skein_flow *flow;
	__u64 cookie;

	cookie = bpf_get_socket_cookie(sk);
	flow = bpf_map_lookup_elem(&skein_flows, &cookie);
	/* An established flow is reported by sock_ops when TCP is done with it (after FIN). */
	if (!flow || flow->established)
		return 1;
	emit(cookie, flow, SKEIN_EV_FAIL, 0, 0, 0, 0);	/* no address was bound */
	bpf_map_delete_elem(&skein_flows, &cookie);
	return 1;
}
