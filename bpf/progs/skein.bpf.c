// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Skein's kernel fast paths. Attached to the cgroup that holds the pods:
 *
 *   cgroup/connect4  decides at connect(): for an enrolled pod dialling a
 *                    service whose endpoints use no tunnel, connect straight
 *                    to the endpoint the daemon's rules would pick; for one
 *                    dialling an enrolled pod on this node (by pod IP or
 *                    service) with no waypoint, apply the destination's
 *                    authorization for the source's identity (refuse, or
 *                    approve the flow). The socket is marked so istio-cni's
 *                    rules do not capture it on the way out.
 *   sockops          records approvals once the client port is known, learns
 *                    enrolled pods' listeners, and reports open, close and
 *                    bytes through a ring buffer.
 *   sock_release     forgets a steered connect that died before its first
 *                    packet, so the flow table cannot fill with ghosts.
 *   getpeername4     shows a steered client the address it dialled (the
 *                    service), as a proxied connection would.
 *   getsockname4     shows the app that accepted an admitted same-node flow
 *                    the port it listens on, not the capture port istio-cni's
 *                    REDIRECT wrote into the SYN.
 *
 * Attached to each enrolled pod's netns:
 *
 *   sk_lookup        after istio-cni's inbound capture redirected a SYN,
 *                    hands an approved same-node flow to the pod's own
 *                    listener instead of the capture port. Only flows our
 *                    connect4 approved are in the table: nothing a pod can
 *                    set on a packet gets it there.
 *
 * A same-node flow's bytes then take the kernel's own TCP path between the
 * two pods, exactly as without a mesh. (Moving them socket to socket with
 * sk_msg was tried and dropped: a reader could see a spurious end of stream
 * on half-closed connections.)
 *
 * Anything these programs cannot decide passes unchanged, to userspace. The
 * only connects they refuse are ones the destination's policy denies.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#include "skein_maps.h"

#define SOL_SOCKET 1
#define SO_MARK 36
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define AF_INET 2
#define AF_INET6 10
#define TCP_LISTEN 10
/* Where istio-cni's inbound rule REDIRECTs a pod's incoming TCP. */
#define ZTUNNEL_INBOUND_PORT 15006

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
	__uint(max_entries, SKEIN_MAX_LOCAL);
	__type(key, __u32);	/* IPv4, network order */
	__type(value, struct skein_local);
} skein_local SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SKEIN_MAX_AUTHZ);
	__type(key, struct skein_authz_key);
	__type(value, __u32);
} skein_authz SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SKEIN_MAX_FLOWS);
	__type(key, __u64);	/* socket cookie */
	__type(value, struct skein_flow);
} skein_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SKEIN_MAX_FLOWS);
	__type(key, struct skein_flow_key);
	__type(value, struct skein_approval);
} skein_approved SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, SKEIN_MAX_SOCKS);
	__type(key, struct skein_listen_key);
	__type(value, __u64);
} skein_listeners SEC(".maps");

/* Server sockets of admitted same-node flows: the app's own port (host order). */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u32);
} skein_app_port SEC(".maps");

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
	const struct skein_endpoint *ep = NULL;
	const struct skein_service *svc;
	const struct skein_local *local;
	struct skein_svc_key key = {};
	struct skein_authz_key az = {};
	struct skein_listen_key lk = {};
	struct bpf_sock *listener;
	const struct skein_pod *pod;
	struct skein_flow flow = {};
	int mark = SKEIN_INPOD_MARK;
	__u64 netns, cookie;
	__u32 *verdict;

	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP)
		return 1;
	/*
	 * The node proxy dials from inside pods too (to the app behind a
	 * tunnel, to a no-tunnel endpoint it picked), marked as istio-cni
	 * expects. Those connects are already decided and are not the pod's
	 * own flows: counting them would report every tunnelled connection a
	 * second time, as the pod talking to itself.
	 */
	if (ctx->sk && (ctx->sk->mark & SKEIN_INPOD_MARK_MASK) == SKEIN_INPOD_MARK)
		return 1;
	netns = bpf_get_netns_cookie(ctx);
	pod = bpf_map_lookup_elem(&skein_pods, &netns);
	if (!pod)
		return 1;	/* not an enrolled pod: not ours */

	flow.start_ns = bpf_ktime_get_ns();
	flow.pod_id = pod->pod_id;
	flow.orig_ip = ctx->user_ip4;
	flow.orig_port = (__u16)ctx->user_port;
	flow.dst_ip = flow.orig_ip;
	flow.dst_port = flow.orig_port;

	key.vip = ctx->user_ip4;
	key.port = (__u16)ctx->user_port;
	svc = bpf_map_lookup_elem(&skein_services, &key);
	if (svc) {
		flow.svc_id = svc->svc_id;
		if (!(svc->flags & SKEIN_SVC_PASSTHROUGH)) {
			ep = pick(svc);
			if (!ep) {
				count(SKEIN_STAT_NO_ENDPOINT);
				return 1;
			}
			flow.dst_ip = ep->ip;
			flow.dst_port = ep->port;
		}
	}

	/* A destination enrolled on this node: its policy decides, here. */
	local = bpf_map_lookup_elem(&skein_local, &flow.dst_ip);
	if (local) {
		/* Only to a port the destination listens on: sk_lookup must have somewhere to put it. */
		lk.netns_cookie = local->netns_cookie;
		lk.port = bpf_ntohs(flow.dst_port);
		listener = bpf_map_lookup_elem(&skein_listeners, &lk);
		if (!listener)
			return 1;
		bpf_sk_release(listener);
		az.src_pod = pod->pod_id;
		az.dst_pod = local->pod_id;
		verdict = bpf_map_lookup_elem(&skein_authz, &az);
		if (!verdict)
			return 1;	/* not expressible in the kernel: userspace */
		if (*verdict != SKEIN_AUTHZ_ALLOW) {
			count(SKEIN_STAT_DENIED);
			return 0;	/* connect() fails with EPERM */
		}
		flow.dst_netns = local->netns_cookie;
		flow.dst_pod = local->pod_id;
	} else if (!svc) {
		return 1;	/* neither a kernel service nor a local pod */
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
	ctx->user_ip4 = flow.dst_ip;
	ctx->user_port = flow.dst_port;
	if (flow.dst_netns)
		count(SKEIN_STAT_SAME_NODE);
	else if (ep)
		count(SKEIN_STAT_LB_REWRITE);
	else
		count(SKEIN_STAT_PASSTHROUGH);
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
	ev->dst_pod = flow->dst_pod;
	ev->pad2 = 0;
	bpf_ringbuf_submit(ev, 0);
}

/*
 * Only listeners other pods could reach anyway: IPv4 ones not bound to
 * loopback, and dual-stack IPv6 ones bound to the wildcard (Node's and
 * Java's default). A loopback-only listener must stay private to its pod
 * (sk_lookup would hand it any flow); an IPv6-only one cannot take IPv4.
 */
static __always_inline int reachable(const struct sock_common *skc)
{
	struct in6_addr a;
	__u16 family = BPF_CORE_READ(skc, skc_family);

	if (family == AF_INET)
		return (bpf_ntohl(BPF_CORE_READ(skc, skc_rcv_saddr)) >> 24) != 127;
	if (family != AF_INET6 || BPF_CORE_READ_BITFIELD_PROBED(skc, skc_ipv6only))
		return 0;
	a = BPF_CORE_READ(skc, skc_v6_rcv_saddr);
	return (a.in6_u.u6_addr32[0] | a.in6_u.u6_addr32[1] | a.in6_u.u6_addr32[2] | a.in6_u.u6_addr32[3]) == 0;
}

/* An enrolled pod's listener, so sk_lookup can hand it approved flows. */
static __always_inline void learn_listener(struct bpf_sock_ops *skops)
{
	struct skein_listen_key lk = {};
	struct bpf_sock *sk = skops->sk;
	struct tcp_sock *tp;

	if (!sk)
		return;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp || !reachable((const struct sock_common *)tp))
		return;
	lk.netns_cookie = bpf_get_netns_cookie(skops);
	if (!bpf_map_lookup_elem(&skein_pods, &lk.netns_cookie))
		return;
	lk.port = skops->local_port;
	bpf_sock_hash_update(skops, &skein_listeners, &lk, BPF_ANY);
}

/*
 * The accepting end of a same-node flow: if our sk_lookup handed it to the
 * app past the REDIRECT, remember the port the client dialled, for
 * getsockname4. (A flow that found no listener went to the capture port;
 * Skein's own socket there keeps its real local port.)
 */
static __always_inline void remember_app_port(struct bpf_sock_ops *skops)
{
	const struct skein_approval *appr;
	struct bpf_sock *sk = skops->sk;
	struct skein_flow_key fk = {};
	__u32 *port;

	if (skops->family != AF_INET || !sk)
		return;
	fk.ip = skops->remote_ip4;
	fk.port = bpf_ntohl(skops->remote_port);
	fk.dst_ip = skops->local_ip4;
	appr = bpf_map_lookup_elem(&skein_approved, &fk);
	if (!appr || !appr->admitted || appr->dst_port == skops->local_port ||
	    appr->dst_netns != bpf_get_netns_cookie(skops))
		return;
	port = bpf_sk_storage_get(&skein_app_port, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (port)
		*port = appr->dst_port;
}

SEC("sockops")
int skein_sockops(struct bpf_sock_ops *skops)
{
	struct skein_approval appr = {};
	struct skein_flow_key fk = {};
	struct skein_flow *flow;
	__u64 cookie;

	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_LISTEN_CB:
		learn_listener(skops);
		return 1;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		remember_app_port(skops);
		return 1;
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
	fk.ip = skops->local_ip4;
	fk.port = skops->local_port;
	fk.dst_ip = flow->dst_ip;
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		/* Ask for state changes, to see the close (or the failure). */
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
		if (flow->dst_netns) {
			/* The client port is known now: approve this flow for the destination. */
			appr.dst_netns = flow->dst_netns;
			appr.dst_port = bpf_ntohs(flow->dst_port);
			bpf_map_update_elem(&skein_approved, &fk, &appr, BPF_ANY);
		}
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		flow->established = 1;
		emit(cookie, flow, SKEIN_EV_OPEN, fk.ip, fk.port, 0, 0);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] != BPF_TCP_CLOSE)
			break;
		emit(cookie, flow, flow->established ? SKEIN_EV_CLOSE : SKEIN_EV_FAIL,
		     fk.ip, fk.port, skops->bytes_acked, skops->bytes_received);
		if (flow->dst_netns) {
			/* A later flow from this port to another port of the pod may own the entry now. */
			const struct skein_approval *mine = bpf_map_lookup_elem(&skein_approved, &fk);

			if (mine && mine->dst_port == bpf_ntohs(flow->dst_port))
				bpf_map_delete_elem(&skein_approved, &fk);
		}
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

/* A steered client asking whom it is connected to: the address it dialled. */
SEC("cgroup/getpeername4")
int skein_getpeername4(struct bpf_sock_addr *ctx)
{
	const struct skein_flow *flow;
	__u64 cookie = bpf_get_socket_cookie(ctx);

	flow = bpf_map_lookup_elem(&skein_flows, &cookie);
	if (flow) {
		ctx->user_ip4 = flow->orig_ip;
		ctx->user_port = flow->orig_port;
	}
	return 1;
}

/* An app asking which port it accepted an admitted flow on: its own. */
SEC("cgroup/getsockname4")
int skein_getsockname4(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	__u32 *port;

	if (!sk)
		return 1;
	port = bpf_sk_storage_get(&skein_app_port, sk, 0, 0);
	if (port)
		ctx->user_port = bpf_htons((__u16)*port);
	return 1;
}

SEC("sk_lookup")
int skein_sk_lookup(struct bpf_sk_lookup *ctx)
{
	struct skein_approval *appr;
	struct skein_listen_key lk = {};
	struct skein_flow_key fk = {};
	struct bpf_sock *sk;
	long err;

	if (ctx->family != AF_INET || ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	fk.ip = ctx->remote_ip4;
	fk.port = bpf_ntohs((__u16)ctx->remote_port);
	fk.dst_ip = ctx->local_ip4;
	appr = bpf_map_lookup_elem(&skein_approved, &fk);
	if (!appr)
		return SK_PASS;	/* not ours: istio-cni's capture takes it */
	/*
	 * The approved flow arrives at the port the client dialled, or at the
	 * capture port istio-cni's REDIRECT wrote into it. Anything else from
	 * that address (a connect sharing its port with the approved one) is
	 * another flow, for whoever listens where it is addressed.
	 */
	if (ctx->local_port != appr->dst_port && ctx->local_port != ZTUNNEL_INBOUND_PORT) {
		count(SKEIN_STAT_OTHER_FLOW);
		return SK_PASS;
	}
	lk.netns_cookie = appr->dst_netns;
	lk.port = appr->dst_port;
	sk = bpf_map_lookup_elem(&skein_listeners, &lk);
	if (!sk) {
		count(SKEIN_STAT_NO_LISTENER);
		return SK_PASS;
	}
	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (!err) {
		appr->admitted = 1;
		count(SKEIN_STAT_ADMITTED);
	}
	return SK_PASS;
}

/*
 * Run by the daemon from inside an enrolled pod's netns (an iterator reads
 * the TCP sockets of the reader's netns): learns the listeners the pod's
 * apps opened before it was enrolled. Later ones come through sockops.
 */
SEC("iter/tcp")
int skein_learn_listeners(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct skein_listen_key lk = {};
	struct tcp_sock *tp;

	if (!skc || skc->skc_state != TCP_LISTEN || !reachable(skc))
		return 0;
	lk.netns_cookie = BPF_CORE_READ(skc, skc_net.net, net_cookie);
	if (!bpf_map_lookup_elem(&skein_pods, &lk.netns_cookie))
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	lk.port = skc->skc_num;
	bpf_map_update_elem(&skein_listeners, &lk, (struct sock *)tp, BPF_ANY);
	return 0;
}
