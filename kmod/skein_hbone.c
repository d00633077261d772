// SPDX-License-Identifier: GPL-2.0
/*
 * skein_hbone: a TCP upper-layer protocol (ULP) that carries an established
 * HBONE tunnel's HTTP/2 DATA frames in the kernel, above kTLS, so that the
 * tunnel's bytes need not pass through Skein's userspace. skein_hbone.h says
 * how a socket is handed over and what the module does with it.
 *
 * A socket holds one ULP, so the module cannot be set on top of "tls". It is
 * set first and stays above: when userspace asks for "tls", the module steps
 * aside, lets the kernel install tls on the bare TCP socket, and wraps what
 * tls installed. Its wrapping is a per-socket copy of the socket's struct
 * proto and proto_ops (as tls itself does) with the read, write, option and
 * close entries replaced; the context is found from sk->sk_prot.
 *
 * Locks: rx_lock serialises the read side (it sleeps in the lower recvmsg);
 * tx_lock serialises frames on the write side, so frames never interleave.
 * The read side takes tx_lock to answer PING and send WINDOW_UPDATE; the
 * write side only ever trylocks rx_lock, so the two never wait on each other.
 *
 * The module is pinned by every socket it holds (the ULP's module reference,
 * kept until the socket is closed), so rmmod is refused while tunnels live.
 */
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/net.h>
#include <linux/slab.h>
#include <linux/uio.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <net/sock.h>
#include <net/tcp.h>
#include <net/tls.h>

#include "skein_hbone.h"

/* RFC 9113 section 6: frame types, flags, error codes. */
#define H2_DATA 0x0
#define H2_PING 0x6
#define H2_GOAWAY 0x7
#define H2_WINDOW_UPDATE 0x8
#define H2_F_END_STREAM 0x1
#define H2_F_ACK 0x1
#define H2_F_PADDED 0x8
#define H2_PROTOCOL_ERROR 0x1
#define H2_FLOW_CONTROL_ERROR 0x3
#define H2_FRAME_SIZE_ERROR 0x6
#define H2_HDR 9
#define H2_MAX_WINDOW 0x7fffffffLL
#define SKEIN_TLS_CONTROL 256

#define RXBUF_SIZE (H2_HDR + 16384)

struct skein_ctx {
	struct proto proto;		/* sk->sk_prot points here */
	struct proto_ops ops;		/* sk->sk_socket->ops points here */
	struct proto *lower;		/* what we wrap: tcp's, or tls's */
	const struct proto_ops *lower_ops;
	u32 mode;
	bool tls;
	bool ulp_is_ours;		/* icsk_ulp_ops still ours: tcp puts our module ref */

	struct mutex rx_lock;
	struct mutex tx_lock;
	wait_queue_head_t wq;		/* writers waiting for send window */

	u32 stream_id;
	u32 max_frame;
	u32 max_recv_frame;
	u32 recv_window;
	s64 conn_send_win, stream_send_win;
	s64 conn_recv_avail, stream_recv_avail;
	u32 conn_unacked, stream_unacked;	/* consumed, not yet given back */

	/* Raw HTTP/2 bytes read from below: [rx_head, rx_tail). */
	u8 *rxbuf;
	u32 rx_head, rx_tail;
	u32 data_left;			/* payload of the current DATA frame still to deliver */
	u32 pad_left;			/* its padding still to skip */
	bool end_stream;		/* the current DATA frame ends the stream */
	bool rx_eof;

	/* shutdown(SHUT_WR) ends our side of the stream (END_STREAM), not TCP:
	 * it runs inside the socket lock, so the frame goes out from a work item. */
	bool tx_ended;
	struct work_struct end_work;
	struct sock *sk;

	struct skein_hbone_info info;
};

static struct tcp_ulp_ops skein_ulp_ops;

static struct skein_ctx *skein_ctx(const struct sock *sk)
{
	return container_of(READ_ONCE(sk->sk_prot), struct skein_ctx, proto);
}

static void put_h2_header(u8 *h, u32 len, u8 type, u8 flags, u32 sid)
{
	h[0] = len >> 16;
	h[1] = len >> 8;
	h[2] = len;
	h[3] = type;
	h[4] = flags;
	put_unaligned_be32(sid & 0x7fffffff, h + 5);
}

/* Sends all of buf below us, or fails; a frame is never left half-sent
 * unless the connection is failing anyway. Caller holds tx_lock. */
static int send_all(struct sock *sk, struct skein_ctx *ctx, void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		struct kvec kv = { .iov_base = (u8 *)buf + done, .iov_len = len - done };
		struct msghdr m = { .msg_flags = MSG_NOSIGNAL };
		int ret;

		iov_iter_kvec(&m.msg_iter, ITER_SOURCE, &kv, 1, len - done);
		ret = ctx->lower->sendmsg(sk, &m, len - done);
		if (ret < 0) {
			if (done > 0 && ctx->mode == SKEIN_HBONE_MODE_FRAMING)
				ctx->mode = SKEIN_HBONE_MODE_ERROR;
			return ret;
		}
		done += ret;
	}
	return 0;
}

static int send_control(struct sock *sk, struct skein_ctx *ctx, u8 type, u8 flags,
			u32 sid, const void *payload, u32 len)
{
	u8 frame[H2_HDR + 8];
	int ret;

	if (WARN_ON_ONCE(len > 8))
		return -EINVAL;
	put_h2_header(frame, len, type, flags, sid);
	memcpy(frame + H2_HDR, payload, len);
	mutex_lock(&ctx->tx_lock);
	ret = send_all(sk, ctx, frame, H2_HDR + len);
	mutex_unlock(&ctx->tx_lock);
	return ret;
}

/* A connection error (RFC 9113 section 5.4.1): GOAWAY, then shut the socket. */
static int conn_error(struct sock *sk, struct skein_ctx *ctx, u32 code)
{
	u8 p[8];

	if (ctx->mode == SKEIN_HBONE_MODE_ERROR)
		return -EPROTO;
	put_unaligned_be32(ctx->stream_id, p);
	put_unaligned_be32(code, p + 4);
	send_control(sk, ctx, H2_GOAWAY, 0, 0, p, 8);
	ctx->mode = SKEIN_HBONE_MODE_ERROR;
	ctx->info.goaway_error = code;
	wake_up_all(&ctx->wq);
	if (sk->sk_socket)
		kernel_sock_shutdown(sk->sk_socket, SHUT_RDWR);
	return -EPROTO;
}

static void fall_back(struct skein_ctx *ctx, u32 frame_type)
{
	ctx->mode = SKEIN_HBONE_MODE_FALLBACK;
	ctx->info.fallback_frame_type = frame_type;
	wake_up_all(&ctx->wq);
}

/* Gives consumed receive window back once half of it is used (section 6.9). */
static int credit(struct sock *sk, struct skein_ctx *ctx, u32 n)
{
	u32 half = ctx->recv_window / 2;
	u8 p[4];
	int ret = 0;

	ctx->conn_unacked += n;
	ctx->stream_unacked += n;
	if (ctx->conn_unacked >= half) {
		put_unaligned_be32(ctx->conn_unacked, p);
		ret = send_control(sk, ctx, H2_WINDOW_UPDATE, 0, 0, p, 4);
		if (ret)
			return ret;
		ctx->conn_recv_avail += ctx->conn_unacked;
		ctx->conn_unacked = 0;
		ctx->info.window_updates_sent++;
	}
	if (ctx->stream_unacked >= half && !ctx->end_stream && !ctx->rx_eof) {
		put_unaligned_be32(ctx->stream_unacked, p);
		ret = send_control(sk, ctx, H2_WINDOW_UPDATE, 0, ctx->stream_id, p, 4);
		if (ret)
			return ret;
		ctx->stream_recv_avail += ctx->stream_unacked;
		ctx->stream_unacked = 0;
		ctx->info.window_updates_sent++;
	}
	return 0;
}

/* Reads more raw bytes from below into rxbuf. >0 read, 0 EOF, <0 error. */
static int rx_fill(struct sock *sk, struct skein_ctx *ctx, int flags)
{
	struct msghdr m = {};
	struct kvec kv;
	int addr_len = 0, ret;

	if (ctx->rx_head > 0) {
		memmove(ctx->rxbuf, ctx->rxbuf + ctx->rx_head, ctx->rx_tail - ctx->rx_head);
		ctx->rx_tail -= ctx->rx_head;
		ctx->rx_head = 0;
	}
	if (ctx->rx_tail == RXBUF_SIZE)
		return -ENOBUFS;
	kv.iov_base = ctx->rxbuf + ctx->rx_tail;
	kv.iov_len = RXBUF_SIZE - ctx->rx_tail;
	iov_iter_kvec(&m.msg_iter, ITER_DEST, &kv, 1, kv.iov_len);
	ret = ctx->lower->recvmsg(sk, &m, kv.iov_len, flags & MSG_DONTWAIT, &addr_len);
	if (ret > 0)
		ctx->rx_tail += ret;
	return ret;
}

enum rx_step { RX_PROGRESS, RX_NEED_BYTES, RX_PAYLOAD, RX_STOP };

/*
 * Handles what starts at rx_head: skips padding, takes a frame header, or
 * answers a control frame. Returns RX_PAYLOAD when DATA payload is ready to
 * deliver, RX_NEED_BYTES when the next step needs more bytes from below,
 * RX_STOP on fallback, error or end of stream. Caller holds rx_lock.
 */
static enum rx_step rx_step(struct sock *sk, struct skein_ctx *ctx, int *err)
{
	u32 have = ctx->rx_tail - ctx->rx_head;
	u8 *h = ctx->rxbuf + ctx->rx_head;
	u32 len, sid, padlen = 0, hdr;
	u8 type, flags;

	if (ctx->mode != SKEIN_HBONE_MODE_FRAMING)
		return RX_STOP;
	if (ctx->data_left > 0)
		return have > 0 ? RX_PAYLOAD : RX_NEED_BYTES;
	if (ctx->pad_left > 0) {
		u32 n = min(have, ctx->pad_left);

		if (n == 0)
			return RX_NEED_BYTES;
		ctx->pad_left -= n;
		ctx->rx_head += n;
		return RX_PROGRESS;
	}
	if (ctx->end_stream) {
		ctx->rx_eof = true;
		return RX_STOP;
	}
	if (have < H2_HDR)
		return RX_NEED_BYTES;
	len = (h[0] << 16) | (h[1] << 8) | h[2];
	type = h[3];
	flags = h[4];
	sid = get_unaligned_be32(h + 5) & 0x7fffffff;
	if (len > ctx->max_recv_frame) {
		*err = conn_error(sk, ctx, H2_FRAME_SIZE_ERROR);
		return RX_STOP;
	}
	switch (type) {
	case H2_DATA:
		if (sid == 0) {
			*err = conn_error(sk, ctx, H2_PROTOCOL_ERROR);
			return RX_STOP;
		}
		if (sid != ctx->stream_id)
			break;
		hdr = H2_HDR;
		if (flags & H2_F_PADDED) {
			if (have < H2_HDR + 1)
				return RX_NEED_BYTES;
			padlen = h[H2_HDR];
			hdr++;
			if (len < 1 || padlen > len - 1) {
				*err = conn_error(sk, ctx, H2_PROTOCOL_ERROR);
				return RX_STOP;
			}
		}
		/* The whole frame counts against both windows (section 6.9.1). */
		if (len > ctx->conn_recv_avail || len > ctx->stream_recv_avail) {
			*err = conn_error(sk, ctx, H2_FLOW_CONTROL_ERROR);
			return RX_STOP;
		}
		ctx->conn_recv_avail -= len;
		ctx->stream_recv_avail -= len;
		ctx->rx_head += hdr;
		ctx->data_left = len - (hdr - H2_HDR) - padlen;
		ctx->pad_left = padlen;
		ctx->end_stream = flags & H2_F_END_STREAM;
		/* Padding and the pad-length octet are consumed now, not by a read. */
		if (len - ctx->data_left > 0) {
			*err = credit(sk, ctx, len - ctx->data_left);
			if (*err)
				return RX_STOP;
		}
		return RX_PROGRESS;
	case H2_WINDOW_UPDATE: {
		u32 inc;
		s64 *win;

		if (len != 4) {
			*err = conn_error(sk, ctx, H2_FRAME_SIZE_ERROR);
			return RX_STOP;
		}
		if (sid != 0 && sid != ctx->stream_id)
			break;
		if (have < H2_HDR + 4)
			return RX_NEED_BYTES;
		inc = get_unaligned_be32(h + H2_HDR) & 0x7fffffff;
		win = sid == 0 ? &ctx->conn_send_win : &ctx->stream_send_win;
		/* A zero increment is a stream error on a stream; a tunnel is one
		 * stream, so both are taken as connection errors here. */
		if (inc == 0) {
			*err = conn_error(sk, ctx, H2_PROTOCOL_ERROR);
			return RX_STOP;
		}
		if (*win + inc > H2_MAX_WINDOW) {
			*err = conn_error(sk, ctx, H2_FLOW_CONTROL_ERROR);
			return RX_STOP;
		}
		mutex_lock(&ctx->tx_lock);
		*win += inc;
		mutex_unlock(&ctx->tx_lock);
		ctx->rx_head += H2_HDR + 4;
		ctx->info.window_updates_received++;
		wake_up_all(&ctx->wq);
		return RX_PROGRESS;
	}
	case H2_PING:
		if (len != 8) {
			*err = conn_error(sk, ctx, H2_FRAME_SIZE_ERROR);
			return RX_STOP;
		}
		if (sid != 0) {
			*err = conn_error(sk, ctx, H2_PROTOCOL_ERROR);
			return RX_STOP;
		}
		if (have < H2_HDR + 8)
			return RX_NEED_BYTES;
		if (!(flags & H2_F_ACK)) {
			*err = send_control(sk, ctx, H2_PING, H2_F_ACK, 0, h + H2_HDR, 8);
			if (*err)
				return RX_STOP;
			ctx->info.pings_acked++;
		}
		ctx->rx_head += H2_HDR + 8;
		return RX_PROGRESS;
	default:
		break;
	}
	/* SETTINGS, HEADERS, RST_STREAM, GOAWAY, other streams, unknown types:
	 * userspace's business. The frame stays in rxbuf, unconsumed. */
	fall_back(ctx, type);
	return RX_STOP;
}

/* Pulls from below and handles what came, when fill says bytes are needed. */
static int rx_need(struct sock *sk, struct skein_ctx *ctx, int flags)
{
	int ret = rx_fill(sk, ctx, flags);

	if (ret == 0) {
		ctx->rx_eof = true;
		return 0;
	}
	if (ret == -EIO && ctx->tls) {
		/* kTLS refuses to hand a non-data record to a reader without a
		 * control buffer, and keeps it: userspace reads it after DETACH. */
		fall_back(ctx, SKEIN_TLS_CONTROL);
		return -ENOMSG;
	}
	return ret;
}

static int skein_recvmsg(struct sock *sk, struct msghdr *msg, size_t len, int flags,
			 int *addr_len)
{
	struct skein_ctx *ctx = skein_ctx(sk);
	size_t copied = 0;
	int err = 0;

	if (flags & (MSG_PEEK | MSG_OOB | MSG_ERRQUEUE)) {
		if (ctx->mode == SKEIN_HBONE_MODE_PASSTHROUGH && ctx->rx_head == ctx->rx_tail)
			return ctx->lower->recvmsg(sk, msg, len, flags, addr_len);
		return -EOPNOTSUPP;
	}
	mutex_lock(&ctx->rx_lock);
	if (ctx->mode == SKEIN_HBONE_MODE_PASSTHROUGH) {
		/* What a fallback left behind comes first, then the socket itself. */
		if (ctx->rx_head < ctx->rx_tail) {
			u32 n = min_t(size_t, len, ctx->rx_tail - ctx->rx_head);

			if (copy_to_iter(ctx->rxbuf + ctx->rx_head, n, &msg->msg_iter) != n)
				err = -EFAULT;
			else
				ctx->rx_head += n;
			mutex_unlock(&ctx->rx_lock);
			return err ? err : n;
		}
		mutex_unlock(&ctx->rx_lock);
		return ctx->lower->recvmsg(sk, msg, len, flags, addr_len);
	}
	while (copied < len) {
		enum rx_step st = rx_step(sk, ctx, &err);

		if (st == RX_PROGRESS)
			continue;
		if (st == RX_PAYLOAD) {
			u32 n = min_t(size_t, len - copied,
				      min(ctx->data_left, ctx->rx_tail - ctx->rx_head));

			if (copy_to_iter(ctx->rxbuf + ctx->rx_head, n, &msg->msg_iter) != n) {
				err = -EFAULT;
				break;
			}
			ctx->rx_head += n;
			ctx->data_left -= n;
			ctx->info.rx_bytes += n;
			copied += n;
			err = credit(sk, ctx, n);
			if (err)
				break;
			continue;
		}
		if (st == RX_STOP)
			break;
		/* RX_NEED_BYTES: return what we have rather than wait for more. */
		if (copied > 0 && !(flags & MSG_WAITALL))
			break;
		err = rx_need(sk, ctx, flags);
		if (err <= 0)
			break;	/* end of stream, or an error */
		err = 0;
	}
	if (copied == 0 && err == 0) {
		if (ctx->mode == SKEIN_HBONE_MODE_FALLBACK)
			err = -ENOMSG;
		else if (ctx->mode == SKEIN_HBONE_MODE_ERROR)
			err = -EPROTO;
	}
	mutex_unlock(&ctx->rx_lock);
	return copied > 0 ? copied : err;
}

static bool window_open(const struct skein_ctx *ctx)
{
	return (ctx->conn_send_win > 0 && ctx->stream_send_win > 0) ||
	       ctx->mode != SKEIN_HBONE_MODE_FRAMING;
}

/*
 * Waits for send window. If no reader holds the read side, the writer reads
 * the peer's frames itself, so a write-only tunnel still sees WINDOW_UPDATE;
 * it stops at DATA payload, which stays for the application to read (as in
 * any HTTP/2 stack, a peer that waits for its reader to be read stalls us).
 */
static int wait_send_window(struct sock *sk, struct skein_ctx *ctx)
{
	int err = 0;

	if (mutex_trylock(&ctx->rx_lock)) {
		enum rx_step st;

		do {
			st = rx_step(sk, ctx, &err);
		} while (st == RX_PROGRESS && !window_open(ctx));
		if (!err && st == RX_NEED_BYTES && ctx->data_left == 0 && !window_open(ctx)) {
			err = rx_need(sk, ctx, 0);
			err = err > 0 ? 0 : err == 0 ? -EPIPE : err;
			mutex_unlock(&ctx->rx_lock);
			return err;
		}
		mutex_unlock(&ctx->rx_lock);
		if (err || window_open(ctx))
			return err;
	}
	wait_event_interruptible_timeout(ctx->wq, window_open(ctx), HZ / 10);
	return signal_pending(current) ? -EINTR : 0;
}

/* The largest DATA payload to send: the peer's limit, and under kTLS one
 * that makes a frame exactly one full TLS record (16 KiB of plaintext), not
 * a full record and a 9-byte one. */
static u32 frame_cap(const struct skein_ctx *ctx)
{
	return ctx->tls ? min_t(u32, ctx->max_frame, TLS_MAX_PAYLOAD_SIZE - H2_HDR) : ctx->max_frame;
}

static int skein_sendmsg(struct sock *sk, struct msghdr *msg, size_t size)
{
	struct skein_ctx *ctx = skein_ctx(sk);
	long timeo = sock_sndtimeo(sk, msg->msg_flags & MSG_DONTWAIT);
	size_t copied = 0;
	u8 *frame;
	int err = 0;

	if (ctx->mode == SKEIN_HBONE_MODE_PASSTHROUGH)
		return ctx->lower->sendmsg(sk, msg, size);
	if (msg->msg_controllen)
		return -EINVAL;
	frame = kmalloc(H2_HDR + min_t(size_t, size, frame_cap(ctx)), GFP_KERNEL);
	if (!frame)
		return -ENOMEM;
	while (msg_data_left(msg) > 0) {
		s64 win;
		u32 n;

		if (ctx->mode == SKEIN_HBONE_MODE_FALLBACK) {
			err = -ENOMSG;
			break;
		}
		if (ctx->mode != SKEIN_HBONE_MODE_FRAMING) {
			err = -EPROTO;
			break;
		}
		if (READ_ONCE(ctx->tx_ended)) {
			err = -EPIPE;
			break;
		}
		mutex_lock(&ctx->tx_lock);
		win = min(ctx->conn_send_win, ctx->stream_send_win);
		if (win <= 0) {
			mutex_unlock(&ctx->tx_lock);
			if (copied > 0 || timeo == 0) {
				err = copied > 0 ? 0 : -EAGAIN;
				break;
			}
			err = wait_send_window(sk, ctx);
			if (err)
				break;
			continue;
		}
		n = min_t(size_t, msg_data_left(msg), min_t(s64, win, frame_cap(ctx)));
		put_h2_header(frame, n, H2_DATA, 0, ctx->stream_id);
		if (copy_from_iter(frame + H2_HDR, n, &msg->msg_iter) != n) {
			mutex_unlock(&ctx->tx_lock);
			err = -EFAULT;
			break;
		}
		err = send_all(sk, ctx, frame, H2_HDR + n);
		if (!err) {
			ctx->conn_send_win -= n;
			ctx->stream_send_win -= n;
			ctx->info.tx_bytes += n;
			copied += n;
		}
		mutex_unlock(&ctx->tx_lock);
		if (err)
			break;
	}
	kfree(frame);
	return copied > 0 ? copied : err;
}

static void skein_fill_info(struct skein_ctx *ctx, struct skein_hbone_info *info)
{
	*info = ctx->info;
	info->mode = ctx->mode;
	info->tls = ctx->tls;
	info->conn_send_window = ctx->conn_send_win;
	info->stream_send_window = ctx->stream_send_win;
	info->conn_recv_avail = ctx->conn_recv_avail;
	info->stream_recv_avail = ctx->stream_recv_avail;
	info->raw_pending = ctx->rx_tail - ctx->rx_head;
}

/* Points the socket at our wrapping of whatever is below now. Caller holds the socket lock. */
static void wrap(struct sock *sk, struct skein_ctx *ctx);

static int start_stream(struct sock *sk, struct skein_ctx *ctx, sockptr_t optval, unsigned int optlen)
{
	struct skein_hbone_stream s;
	int err = 0;

	if (optlen < sizeof(s))
		return -EINVAL;
	if (copy_from_sockptr(&s, optval, sizeof(s)))
		return -EFAULT;
	if (s.stream_id == 0 || s.stream_id > 0x7fffffff ||
	    s.max_frame_size < 16384 || s.max_frame_size > 16777215 ||
	    s.max_recv_frame_size < 16384 || s.max_recv_frame_size > 16384 ||
	    s.recv_window == 0 || s.recv_window > H2_MAX_WINDOW ||
	    s.conn_recv_avail > H2_MAX_WINDOW || s.stream_recv_avail > H2_MAX_WINDOW ||
	    s.conn_send_window > H2_MAX_WINDOW || s.stream_send_window > H2_MAX_WINDOW ||
	    s.conn_send_window < -H2_MAX_WINDOW || s.stream_send_window < -H2_MAX_WINDOW)
		return -EINVAL;
	mutex_lock(&ctx->rx_lock);
	mutex_lock(&ctx->tx_lock);
	if (ctx->mode != SKEIN_HBONE_MODE_PASSTHROUGH || ctx->rx_head != ctx->rx_tail) {
		err = -EBUSY;
		goto out;
	}
	if (!ctx->rxbuf) {
		ctx->rxbuf = kvmalloc(RXBUF_SIZE, GFP_KERNEL);
		if (!ctx->rxbuf) {
			err = -ENOMEM;
			goto out;
		}
	}
	ctx->stream_id = s.stream_id;
	ctx->max_frame = s.max_frame_size;
	ctx->max_recv_frame = s.max_recv_frame_size;
	ctx->recv_window = s.recv_window;
	ctx->conn_send_win = s.conn_send_window;
	ctx->stream_send_win = s.stream_send_window;
	ctx->conn_recv_avail = s.conn_recv_avail;
	ctx->stream_recv_avail = s.stream_recv_avail;
	ctx->conn_unacked = ctx->stream_unacked = 0;
	ctx->rx_head = ctx->rx_tail = 0;
	ctx->data_left = ctx->pad_left = 0;
	ctx->end_stream = ctx->rx_eof = false;
	ctx->mode = SKEIN_HBONE_MODE_FRAMING;
out:
	mutex_unlock(&ctx->tx_lock);
	mutex_unlock(&ctx->rx_lock);
	return err;
}

static int detach(struct skein_ctx *ctx)
{
	int err = 0;

	mutex_lock(&ctx->rx_lock);
	mutex_lock(&ctx->tx_lock);
	if (ctx->mode == SKEIN_HBONE_MODE_ERROR)
		err = -EPROTO;
	else if (ctx->data_left > 0 || ctx->pad_left > 0)
		err = -EBUSY;	/* mid-frame: the raw stream would start inside a payload */
	else
		ctx->mode = SKEIN_HBONE_MODE_PASSTHROUGH;
	mutex_unlock(&ctx->tx_lock);
	mutex_unlock(&ctx->rx_lock);
	wake_up_all(&ctx->wq);
	return err;
}

/* setsockopt(TCP_ULP, "tls") on a socket we hold: step aside, let tcp install
 * tls on the bare socket, then wrap tls. */
static int install_tls(struct sock *sk, struct skein_ctx *ctx, sockptr_t optval, unsigned int optlen)
{
	struct inet_connection_sock *icsk = inet_csk(sk);
	char name[TCP_ULP_NAME_MAX];
	size_t n = min_t(size_t, optlen, sizeof(name) - 1);
	int err;

	if (copy_from_sockptr(name, optval, n))
		return -EFAULT;
	name[n] = '\0';
	if (strcmp(name, "tls") != 0)
		return -EEXIST;	/* as tcp says for a second ULP */
	lock_sock(sk);
	if (ctx->tls || ctx->mode != SKEIN_HBONE_MODE_PASSTHROUGH || !ctx->ulp_is_ours) {
		release_sock(sk);
		return -EEXIST;
	}
	WRITE_ONCE(sk->sk_prot, ctx->lower);
	WRITE_ONCE(sk->sk_socket->ops, ctx->lower_ops);
	/* From here our module reference (taken by tcp_set_ulp for us) is ours
	 * to drop at close, not tcp's. */
	icsk->icsk_ulp_ops = NULL;
	ctx->ulp_is_ours = false;
	release_sock(sk);
	err = tcp_setsockopt(sk, SOL_TCP, TCP_ULP, KERNEL_SOCKPTR("tls"), 3);
	lock_sock(sk);
	if (err) {
		icsk->icsk_ulp_ops = &skein_ulp_ops;
		ctx->ulp_is_ours = true;
	} else {
		ctx->tls = true;
	}
	wrap(sk, ctx);
	release_sock(sk);
	return err;
}

static int skein_setsockopt(struct sock *sk, int level, int optname, sockptr_t optval,
			    unsigned int optlen)
{
	struct skein_ctx *ctx = skein_ctx(sk);
	int err;

	if (level == SOL_SKEIN_HBONE) {
		switch (optname) {
		case SKEIN_HBONE_STREAM:
			return start_stream(sk, ctx, optval, optlen);
		case SKEIN_HBONE_DETACH:
			return detach(ctx);
		default:
			return -ENOPROTOOPT;
		}
	}
	if (level == SOL_TCP && optname == TCP_ULP)
		return install_tls(sk, ctx, optval, optlen);
	err = ctx->lower->setsockopt(sk, level, optname, optval, optlen);
	if (level == SOL_TLS) {
		/* tls re-points sk_prot and ops on TLS_TX/TLS_RX: wrap again. */
		lock_sock(sk);
		if (READ_ONCE(sk->sk_prot) != &ctx->proto)
			wrap(sk, ctx);
		release_sock(sk);
	}
	return err;
}

static int skein_getsockopt(struct sock *sk, int level, int optname, char __user *optval,
			    int __user *optlen)
{
	struct skein_ctx *ctx = skein_ctx(sk);
	struct skein_hbone_info info;
	int len;

	if (level != SOL_SKEIN_HBONE)
		return ctx->lower->getsockopt(sk, level, optname, optval, optlen);
	if (optname != SKEIN_HBONE_INFO)
		return -ENOPROTOOPT;
	if (get_user(len, optlen))
		return -EFAULT;
	if (len < 0)
		return -EINVAL;
	len = min_t(int, len, sizeof(info));
	mutex_lock(&ctx->rx_lock);
	mutex_lock(&ctx->tx_lock);
	skein_fill_info(ctx, &info);
	mutex_unlock(&ctx->tx_lock);
	mutex_unlock(&ctx->rx_lock);
	if (copy_to_user(optval, &info, len) || put_user(len, optlen))
		return -EFAULT;
	return 0;
}

static void end_stream_work(struct work_struct *work)
{
	struct skein_ctx *ctx = container_of(work, struct skein_ctx, end_work);
	u8 frame[H2_HDR];

	put_h2_header(frame, 0, H2_DATA, H2_F_END_STREAM, ctx->stream_id);
	mutex_lock(&ctx->tx_lock);
	send_all(ctx->sk, ctx, frame, H2_HDR);
	mutex_unlock(&ctx->tx_lock);
	sock_put(ctx->sk);
}

/* Called by inet_shutdown with the socket locked, after it set sk_shutdown. */
static void skein_shutdown(struct sock *sk, int how)
{
	struct skein_ctx *ctx = skein_ctx(sk);

	if (ctx->mode == SKEIN_HBONE_MODE_FRAMING && (how & SEND_SHUTDOWN)) {
		/* The TCP connection stays open for the other direction and for
		 * control frames; only our stream's sending side ends. */
		WRITE_ONCE(sk->sk_shutdown, sk->sk_shutdown & ~SEND_SHUTDOWN);
		if (!ctx->tx_ended) {
			WRITE_ONCE(ctx->tx_ended, true);
			sock_hold(sk);
			if (!schedule_work(&ctx->end_work))
				sock_put(sk);
		}
		how &= ~SEND_SHUTDOWN;
		if (!how)
			return;
	}
	if (ctx->lower->shutdown)
		ctx->lower->shutdown(sk, how);
}

static void skein_close(struct sock *sk, long timeout)
{
	struct skein_ctx *ctx = skein_ctx(sk);
	struct proto *lower = ctx->lower;
	bool put_module = !ctx->ulp_is_ours;

	/* An END_STREAM still queued goes out before the connection closes. */
	flush_work(&ctx->end_work);
	lock_sock(sk);
	WRITE_ONCE(sk->sk_prot, lower);
	if (sk->sk_socket)
		WRITE_ONCE(sk->sk_socket->ops, ctx->lower_ops);
	release_sock(sk);
	kvfree(ctx->rxbuf);
	kfree(ctx);
	lower->close(sk, timeout);
	/* With tls below, tcp drops tls's reference, not ours: drop it here.
	 * This code is the module's own; the read-side section keeps rmmod
	 * (tcp_unregister_ulp's synchronize_rcu, before the text is freed)
	 * from completing until it has left module_put. */
	if (put_module) {
		rcu_read_lock();
		module_put(THIS_MODULE);
		rcu_read_unlock();
	}
}

static void wrap(struct sock *sk, struct skein_ctx *ctx)
{
	ctx->lower = READ_ONCE(sk->sk_prot);
	ctx->lower_ops = READ_ONCE(sk->sk_socket->ops);
	ctx->proto = *ctx->lower;
	ctx->proto.close = skein_close;
	ctx->proto.sendmsg = skein_sendmsg;
	ctx->proto.recvmsg = skein_recvmsg;
	ctx->proto.setsockopt = skein_setsockopt;
	ctx->proto.getsockopt = skein_getsockopt;
	ctx->proto.shutdown = skein_shutdown;
	/* Page sends become sendmsg (sock_no_sendpage), so they are framed too. */
	ctx->proto.sendpage = NULL;
	ctx->ops = *ctx->lower_ops;
	ctx->ops.sendpage = sock_no_sendpage;
	/* These read or write below sk_prot; without them the VFS falls back to
	 * plain reads and writes, which come to us. read_sock stays: tls's own
	 * record parser reads TCP through it (tls_strp_read_copy), and nothing
	 * else reaches it here (sockmap and kcm refuse a socket with a ULP). */
	ctx->ops.splice_read = NULL;
	ctx->ops.read_skb = NULL;
	ctx->ops.sendpage_locked = NULL;
	ctx->ops.sendmsg_locked = NULL;
	WRITE_ONCE(sk->sk_prot, &ctx->proto);
	WRITE_ONCE(sk->sk_socket->ops, &ctx->ops);
}

/* Called by tcp_set_ulp with the socket locked. */
static int skein_ulp_init(struct sock *sk)
{
	struct skein_ctx *ctx;

	if (sk->sk_state != TCP_ESTABLISHED || !sk->sk_socket)
		return -ENOTCONN;
	ctx = kzalloc(sizeof(*ctx), GFP_KERNEL);
	if (!ctx)
		return -ENOMEM;
	mutex_init(&ctx->rx_lock);
	mutex_init(&ctx->tx_lock);
	init_waitqueue_head(&ctx->wq);
	INIT_WORK(&ctx->end_work, end_stream_work);
	ctx->sk = sk;
	ctx->mode = SKEIN_HBONE_MODE_PASSTHROUGH;
	ctx->ulp_is_ours = true;
	wrap(sk, ctx);
	return 0;
}

static struct tcp_ulp_ops skein_ulp_ops __read_mostly = {
	.name	= SKEIN_HBONE_ULP_NAME,
	.owner	= THIS_MODULE,
	.init	= skein_ulp_init,
};

static int __init skein_hbone_init(void)
{
	return tcp_register_ulp(&skein_ulp_ops);
}

static void __exit skein_hbone_exit(void)
{
	tcp_unregister_ulp(&skein_ulp_ops);
}

module_init(skein_hbone_init);
module_exit(skein_hbone_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Skein: HBONE (HTTP/2 CONNECT) DATA framing over kTLS");
MODULE_ALIAS_TCP_ULP(SKEIN_HBONE_ULP_NAME);
