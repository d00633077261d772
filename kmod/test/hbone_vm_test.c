// SPDX-License-Identifier: Apache-2.0
/*
 * The module's tests, run inside the VM lab (test/vm/kmod.test.ts boots it):
 * one tunnel per case over loopback, the module on one end, a userspace
 * HTTP/2 peer on the other that reads and writes raw frames (RFC 9113). With
 * "tls", both ends run kTLS (TLS 1.3, AES-128-GCM) with fixed keys: the
 * handshake is userspace's job and not what is tested here.
 *
 *   hbone_vm_test CASE plain|tls    prints "ok - CASE/MODE" or "not ok - ..."
 *
 * Every case is bounded by alarm(); a hang fails the case instead.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "skein_hbone.h"

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

static const char *case_name, *mode_name;
static int use_tls;

static void fail(const char *fmt, ...)
{
	va_list ap;

	printf("not ok - %s/%s: ", case_name, mode_name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(" (errno %d %s)\n", errno, strerror(errno));
	fflush(stdout);
	exit(1);
}

#define CHECK(cond, ...) do { if (!(cond)) fail(__VA_ARGS__); } while (0)

static void on_alarm(int sig)
{
	(void)sig;
	fail("timed out");
}

/* --- sockets ------------------------------------------------------------ */

static void pair(int *mod, int *peer)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct timeval tv = { .tv_sec = 10 };

	CHECK(l >= 0 && bind(l, (void *)&a, sizeof(a)) == 0 && listen(l, 1) == 0, "listen");
	CHECK(getsockname(l, (void *)&a, &len) == 0, "getsockname");
	*mod = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(connect(*mod, (void *)&a, sizeof(a)) == 0, "connect");
	*peer = accept(l, NULL, NULL);
	CHECK(*peer >= 0, "accept");
	close(l);
	setsockopt(*peer, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(*mod, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static void set_ktls(int fd, unsigned char tx_seed, unsigned char rx_seed)
{
	struct tls12_crypto_info_aes_gcm_128 ci;
	unsigned char seeds[2] = { tx_seed, rx_seed };
	int dir[2] = { TLS_TX, TLS_RX };

	CHECK(setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", 3) == 0, "TCP_ULP tls");
	for (int i = 0; i < 2; i++) {
		memset(&ci, 0, sizeof(ci));
		ci.info.version = TLS_1_3_VERSION;
		ci.info.cipher_type = TLS_CIPHER_AES_GCM_128;
		memset(ci.key, seeds[i], sizeof(ci.key));
		memset(ci.salt, seeds[i] + 1, sizeof(ci.salt));
		memset(ci.iv, seeds[i] + 2, sizeof(ci.iv));
		CHECK(setsockopt(fd, SOL_TLS, dir[i], &ci, sizeof(ci)) == 0, "SOL_TLS %d", dir[i]);
	}
}

/* A tunnel: module end (ULP, then kTLS if asked), peer end (kTLS if asked). */
static void tunnel(int *mod, int *peer)
{
	pair(mod, peer);
	CHECK(setsockopt(*mod, IPPROTO_TCP, TCP_ULP, SKEIN_HBONE_ULP_NAME, strlen(SKEIN_HBONE_ULP_NAME)) == 0,
	      "TCP_ULP skein_hbone");
	if (use_tls) {
		set_ktls(*mod, 0x11, 0x22);
		set_ktls(*peer, 0x22, 0x11);
	}
}

static struct skein_hbone_stream stream_defaults(void)
{
	struct skein_hbone_stream s = {
		.stream_id = 1,
		.max_frame_size = 16384,
		.conn_send_window = 1 << 30,
		.stream_send_window = 1 << 30,
		.recv_window = 0x7fffffff,
		.conn_recv_avail = 0x7fffffff,
		.stream_recv_avail = 0x7fffffff,
		.max_recv_frame_size = 16384,
	};
	return s;
}

static void start(int mod, struct skein_hbone_stream s)
{
	CHECK(setsockopt(mod, SOL_SKEIN_HBONE, SKEIN_HBONE_STREAM, &s, sizeof(s)) == 0, "SKEIN_HBONE_STREAM");
}

static struct skein_hbone_info info(int mod)
{
	struct skein_hbone_info i;
	socklen_t len = sizeof(i);

	CHECK(getsockopt(mod, SOL_SKEIN_HBONE, SKEIN_HBONE_INFO, &i, &len) == 0 && len == sizeof(i), "SKEIN_HBONE_INFO");
	return i;
}

static void write_all(int fd, const void *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		CHECK(w > 0, "write");
		p = (const char *)p + w;
		n -= w;
	}
}

static void read_exact(int fd, void *p, size_t n)
{
	while (n > 0) {
		ssize_t r = read(fd, p, n);

		CHECK(r > 0, "read_exact: %zd with %zu left", r, n);
		p = (char *)p + r;
		n -= r;
	}
}

/* --- the userspace HTTP/2 peer ------------------------------------------ */

struct frame {
	unsigned len, type, flags, sid;
	unsigned char payload[1 << 15];
};

static void put_frame(unsigned char *b, unsigned len, unsigned type, unsigned flags, unsigned sid)
{
	b[0] = len >> 16; b[1] = len >> 8; b[2] = len;
	b[3] = type; b[4] = flags;
	b[5] = sid >> 24; b[6] = sid >> 16; b[7] = sid >> 8; b[8] = sid;
}

static void send_frame(int fd, unsigned type, unsigned flags, unsigned sid, const void *p, unsigned len)
{
	unsigned char *b = malloc(9 + len);

	put_frame(b, len, type, flags, sid);
	if (len)
		memcpy(b + 9, p, len);
	write_all(fd, b, 9 + len);
	free(b);
}

static void recv_frame(int fd, struct frame *f)
{
	unsigned char h[9];

	read_exact(fd, h, 9);
	f->len = (h[0] << 16) | (h[1] << 8) | h[2];
	f->type = h[3];
	f->flags = h[4];
	f->sid = ((h[5] & 0x7f) << 24) | (h[6] << 16) | (h[7] << 8) | h[8];
	CHECK(f->len <= sizeof(f->payload), "frame too long: %u", f->len);
	read_exact(fd, f->payload, f->len);
}

static unsigned char pattern(size_t i)
{
	return (unsigned char)(i * 7 + (i >> 9));
}

/* --- cases --------------------------------------------------------------- */

struct writer { int fd; size_t total; size_t chunk; size_t written; int err; };

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	unsigned char *buf = malloc(w->total);

	for (size_t i = 0; i < w->total; i++)
		buf[i] = pattern(i);
	while (w->written < w->total) {
		size_t n = w->total - w->written;
		ssize_t r = write(w->fd, buf + w->written, n < w->chunk ? n : w->chunk);

		if (r <= 0) {
			w->err = errno;
			break;
		}
		w->written += r;
	}
	free(buf);
	return NULL;
}

/* Writes become DATA frames; DATA (some padded) becomes the byte stream; END_STREAM is EOF. */
static void case_roundtrip(void)
{
	static struct frame f;
	struct writer w = { .total = 300000, .chunk = 7001 };
	pthread_t t;
	size_t got = 0, sent = 0;
	int mod, peer;

	tunnel(&mod, &peer);
	start(mod, stream_defaults());
	w.fd = mod;
	pthread_create(&t, NULL, writer_main, &w);
	while (got < w.total) {
		recv_frame(peer, &f);
		CHECK(f.type == 0 && f.sid == 1 && f.flags == 0, "frame type %u sid %u flags %u", f.type, f.sid, f.flags);
		CHECK(f.len > 0 && f.len <= 16384, "DATA length %u", f.len);
		for (unsigned i = 0; i < f.len; i++)
			CHECK(f.payload[i] == pattern(got + i), "payload byte %zu", got + i);
		got += f.len;
	}
	pthread_join(t, NULL);
	CHECK(w.written == w.total && w.err == 0, "writer wrote %zu (errno %d)", w.written, w.err);

	/* Peer to module: plain, padded and an empty frame, the last with END_STREAM. */
	unsigned char buf[16384 + 1];
	unsigned sizes[] = { 1, 100, 16384, 5000, 0, 12345, 16000 };
	unsigned nsizes = sizeof(sizes) / sizeof(sizes[0]);
	size_t expect = 0;

	for (unsigned k = 0; k < nsizes; k++) {
		unsigned n = sizes[k], flags = k == nsizes - 1 ? 0x1 : 0;

		for (unsigned i = 0; i < n; i++)
			buf[i] = pattern(expect + i);
		if (k == 2 || k == nsizes - 1) {
			n = k == 2 ? 16000 : n;	/* padded: 1 + n + 200 <= 16384 */
			unsigned char *p = malloc(1 + n + 200);

			p[0] = 200;
			memcpy(p + 1, buf, n);
			memset(p + 1 + n, 0, 200);
			send_frame(peer, 0, flags | 0x8, 1, p, 1 + n + 200);
			free(p);
		} else {
			send_frame(peer, 0, flags, 1, buf, n);
		}
		expect += n;
	}
	unsigned char *in = malloc(expect + 1);

	while (sent < expect) {
		ssize_t r = read(mod, in + sent, expect - sent + 1);

		CHECK(r > 0, "module read returned %zd after %zu of %zu", r, sent, expect);
		sent += r;
	}
	CHECK(sent == expect, "read %zu, expected %zu", sent, expect);
	for (size_t i = 0; i < expect; i++)
		CHECK(in[i] == pattern(i), "received byte %zu", i);
	CHECK(read(mod, in, 1) == 0, "no EOF after END_STREAM");
	struct skein_hbone_info i = info(mod);
	CHECK(i.tx_bytes == w.total && i.rx_bytes == expect && i.tls == (unsigned)use_tls, "info counters");
	free(in);
	close(mod);
	close(peer);
}

/* The module stops at the send window and goes on when WINDOW_UPDATE opens it. */
static void case_window(void)
{
	static struct frame f;
	struct skein_hbone_stream s = stream_defaults();
	struct writer w = { .total = 5000, .chunk = 5000 };
	struct pollfd p;
	pthread_t t;
	size_t got = 0;
	int mod, peer;

	tunnel(&mod, &peer);
	s.stream_send_window = 1000;
	start(mod, s);
	w.fd = mod;
	pthread_create(&t, NULL, writer_main, &w);
	while (got < 1000) {
		recv_frame(peer, &f);
		CHECK(f.type == 0, "type %u", f.type);
		got += f.len;
	}
	CHECK(got == 1000, "sent %zu past a window of 1000", got);
	p.fd = peer;
	p.events = POLLIN;
	CHECK(poll(&p, 1, 300) == 0, "more data after the window closed");
	unsigned char inc[4] = { 0, 0, 0x0f, 0xa0 };	/* 4000 */

	send_frame(peer, 8, 0, 1, inc, 4);
	while (got < 5000) {
		recv_frame(peer, &f);
		CHECK(f.type == 0, "type %u", f.type);
		for (unsigned i = 0; i < f.len; i++)
			CHECK(f.payload[i] == pattern(got + i), "payload byte %zu", got + i);
		got += f.len;
	}
	pthread_join(t, NULL);
	CHECK(w.written == 5000, "writer wrote %zu", w.written);
	CHECK(info(mod).stream_send_window == 0, "stream window not 0");
	close(mod);
	close(peer);
}

struct reader { int fd; unsigned char buf[64]; ssize_t n, eof; };

static void *reader_main(void *arg)
{
	struct reader *r = arg;

	r->n = read(r->fd, r->buf, sizeof(r->buf));
	r->eof = read(r->fd, r->buf + 32, 1);
	return NULL;
}

/* PING is answered by the module (ACK, same payload) while a reader waits. */
static void case_ping(void)
{
	static struct frame f;
	struct reader r = {};
	pthread_t t;
	int mod, peer;

	tunnel(&mod, &peer);
	start(mod, stream_defaults());
	r.fd = mod;
	pthread_create(&t, NULL, reader_main, &r);
	send_frame(peer, 6, 0, 0, "skeinpng", 8);
	recv_frame(peer, &f);
	CHECK(f.type == 6 && f.flags == 1 && f.sid == 0 && f.len == 8 && memcmp(f.payload, "skeinpng", 8) == 0,
	      "PING ACK: type %u flags %u", f.type, f.flags);
	send_frame(peer, 6, 1, 0, "ignoreme", 8);	/* an ACK needs no answer */
	send_frame(peer, 0, 1, 1, "x", 1);
	pthread_join(t, NULL);
	CHECK(r.n == 1 && r.buf[0] == 'x' && r.eof == 0, "reader got %zd then %zd", r.n, r.eof);
	CHECK(info(mod).pings_acked == 1, "pings_acked");
	close(mod);
	close(peer);
}

/* Consumed receive window comes back as WINDOW_UPDATE, connection and stream. */
static void case_recv_window(void)
{
	static struct frame f;
	struct skein_hbone_stream s = stream_defaults();
	unsigned char buf[16384], in[40000];
	unsigned conn = 0, stream = 0;
	int mod, peer;

	tunnel(&mod, &peer);
	s.recv_window = s.conn_recv_avail = s.stream_recv_avail = 65535;
	start(mod, s);
	memset(buf, 'w', sizeof(buf));
	for (int k = 0; k < 4; k++)
		send_frame(peer, 0, 0, 1, buf, 10000);
	read_exact(mod, in, 40000);
	for (int k = 0; k < 2; k++) {
		recv_frame(peer, &f);
		CHECK(f.type == 8 && f.len == 4, "expected WINDOW_UPDATE, got type %u", f.type);
		unsigned v = (f.payload[0] << 24) | (f.payload[1] << 16) | (f.payload[2] << 8) | f.payload[3];

		if (f.sid == 0)
			conn = v;
		else if (f.sid == 1)
			stream = v;
	}
	CHECK(conn >= 32767 && conn <= 40000 && stream == conn, "increments conn %u stream %u", conn, stream);
	/* The peer may now send up to 65535 - 40000 + conn more. */
	unsigned more = 65535 - 40000 + conn;

	for (unsigned left = more; left > 0;) {
		unsigned n = left > 16384 ? 16384 : left;

		send_frame(peer, 0, 0, 1, buf, n);
		left -= n;
	}
	for (unsigned left = more; left > 0;) {
		ssize_t r = read(mod, in, left > sizeof(in) ? sizeof(in) : left);

		CHECK(r > 0, "read within the window");
		left -= r;
	}
	CHECK(info(mod).mode == SKEIN_HBONE_MODE_FRAMING, "still framing");
	close(mod);
	close(peer);
}

/* shutdown(SHUT_WR) ends the stream (empty DATA with END_STREAM), not the
 * connection: the other direction still flows. */
static void case_half_close(void)
{
	static struct frame f;
	char b[8];
	int mod, peer;

	tunnel(&mod, &peer);
	start(mod, stream_defaults());
	write_all(mod, "abc", 3);
	CHECK(shutdown(mod, SHUT_WR) == 0, "shutdown");
	recv_frame(peer, &f);
	CHECK(f.type == 0 && f.len == 3 && f.flags == 0 && memcmp(f.payload, "abc", 3) == 0, "DATA abc");
	recv_frame(peer, &f);
	CHECK(f.type == 0 && f.sid == 1 && f.len == 0 && f.flags == 1, "END_STREAM: type %u len %u flags %u", f.type, f.len, f.flags);
	errno = 0;
	CHECK(write(mod, "x", 1) == -1 && errno == EPIPE, "write after shutdown: want EPIPE");
	send_frame(peer, 0, 1, 1, "back", 4);
	read_exact(mod, b, 4);
	CHECK(memcmp(b, "back", 4) == 0, "read after our END_STREAM");
	CHECK(read(mod, b, 1) == 0, "EOF after theirs");
	close(mod);
	close(peer);
}

/* Any other frame stops the module; after DETACH userspace reads it byte for byte. */
static void case_fallback(void)
{
	unsigned char settings[9 + 6], data[9 + 5], raw[sizeof(settings) + sizeof(data)], got[sizeof(raw)];
	char out[16];
	int mod, peer;

	tunnel(&mod, &peer);
	start(mod, stream_defaults());
	send_frame(peer, 0, 0, 1, "hello", 5);
	put_frame(settings, 6, 4, 0, 0);
	memcpy(settings + 9, "\x00\x04\x00\x01\x00\x00", 6);
	put_frame(data, 5, 0, 0, 1);
	memcpy(data + 9, "world", 5);
	memcpy(raw, settings, sizeof(settings));
	memcpy(raw + sizeof(settings), data, sizeof(data));
	write_all(peer, raw, sizeof(raw));
	read_exact(mod, out, 5);
	CHECK(memcmp(out, "hello", 5) == 0, "payload before the fallback");
	errno = 0;
	CHECK(read(mod, out, sizeof(out)) == -1 && errno == ENOMSG, "read after SETTINGS: want ENOMSG");
	CHECK(write(mod, "x", 1) == -1 && errno == ENOMSG, "write after fallback: want ENOMSG");
	struct skein_hbone_info i = info(mod);

	CHECK(i.mode == SKEIN_HBONE_MODE_FALLBACK && i.fallback_frame_type == 4, "mode %u type %u", i.mode, i.fallback_frame_type);
	CHECK(setsockopt(mod, SOL_SKEIN_HBONE, SKEIN_HBONE_DETACH, NULL, 0) == 0, "DETACH");
	read_exact(mod, got, sizeof(got));
	CHECK(memcmp(got, raw, sizeof(raw)) == 0, "raw bytes after DETACH differ");
	/* Pass-through both ways now. */
	write_all(mod, "raw!", 4);
	read_exact(peer, out, 4);
	CHECK(memcmp(out, "raw!", 4) == 0, "raw write after DETACH");
	close(mod);
	close(peer);
}

/* A TLS record that is not application data (here a handshake record, as a
 * KeyUpdate would be) stops the module too; after DETACH userspace reads it
 * with its record type, then what followed. kTLS only. */
static void case_tls_control(void)
{
	char cbuf[CMSG_SPACE(sizeof(unsigned char))];
	unsigned char rec[5] = { 24, 0, 0, 1, 0 }, got[16], type = 0;
	struct iovec iov = { rec, sizeof(rec) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;
	char out[8];
	int mod, peer;

	CHECK(use_tls, "tls_control runs over kTLS only");
	tunnel(&mod, &peer);
	start(mod, stream_defaults());
	send_frame(peer, 0, 0, 1, "abc", 3);
	c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_TLS;
	c->cmsg_type = TLS_SET_RECORD_TYPE;
	c->cmsg_len = CMSG_LEN(sizeof(unsigned char));
	*CMSG_DATA(c) = 22;	/* handshake */
	m.msg_controllen = c->cmsg_len;
	CHECK(sendmsg(peer, &m, 0) == (ssize_t)sizeof(rec), "sending a handshake record");
	write_all(peer, "raw", 3);
	read_exact(mod, out, 3);
	CHECK(memcmp(out, "abc", 3) == 0, "DATA before the record");
	errno = 0;
	CHECK(read(mod, out, sizeof(out)) == -1 && errno == ENOMSG, "read at the record: want ENOMSG");
	CHECK(info(mod).fallback_frame_type == 256, "fallback_frame_type %u", info(mod).fallback_frame_type);
	CHECK(setsockopt(mod, SOL_SKEIN_HBONE, SKEIN_HBONE_DETACH, NULL, 0) == 0, "DETACH");
	iov.iov_base = got;
	iov.iov_len = sizeof(got);
	m.msg_control = cbuf;
	m.msg_controllen = sizeof(cbuf);
	ssize_t r = recvmsg(mod, &m, 0);

	c = CMSG_FIRSTHDR(&m);
	if (c && c->cmsg_level == SOL_TLS && c->cmsg_type == TLS_GET_RECORD_TYPE)
		type = *CMSG_DATA(c);
	CHECK(r == (ssize_t)sizeof(rec) && type == 22 && memcmp(got, rec, sizeof(rec)) == 0, "the record after DETACH: %zd bytes, type %u", r, type);
	read_exact(mod, out, 3);
	CHECK(memcmp(out, "raw", 3) == 0, "what followed the record");
	close(mod);
	close(peer);
}

/* A peer that breaks the protocol gets GOAWAY with the right code and EOF. */
static void expect_goaway(int mod, int peer, unsigned code)
{
	static struct frame f;
	char b[8];
	ssize_t r;

	errno = 0;
	CHECK(read(mod, b, sizeof(b)) == -1 && errno == EPROTO, "module read: want EPROTO");
	recv_frame(peer, &f);
	CHECK(f.type == 7 && f.sid == 0 && f.len == 8, "expected GOAWAY, got type %u", f.type);
	unsigned got = (f.payload[4] << 24) | (f.payload[5] << 16) | (f.payload[6] << 8) | f.payload[7];

	CHECK(got == code, "GOAWAY error %u, want %u", got, code);
	/* Then the connection closes (window updates or nothing may come first). */
	while ((r = read(peer, b, sizeof(b))) > 0)
		;
	CHECK(r == 0, "no EOF after GOAWAY");
	CHECK(info(mod).goaway_error == code, "info.goaway_error");
	CHECK(write(mod, "x", 1) == -1, "write after GOAWAY succeeded");
}

static void case_garbage(void)
{
	struct skein_hbone_stream s = stream_defaults();
	unsigned char big[9];
	int mod, peer;

	/* FRAME_SIZE_ERROR (6): longer than our SETTINGS_MAX_FRAME_SIZE. */
	tunnel(&mod, &peer);
	start(mod, s);
	put_frame(big, 20000, 0, 0, 1);
	write_all(peer, big, 9);
	expect_goaway(mod, peer, 6);
	close(mod);
	close(peer);

	/* FLOW_CONTROL_ERROR (3): DATA beyond the window we gave. */
	tunnel(&mod, &peer);
	s.recv_window = s.conn_recv_avail = s.stream_recv_avail = 1000;
	start(mod, s);
	unsigned char buf[1500] = {};

	send_frame(peer, 0, 0, 1, buf, 1500);
	expect_goaway(mod, peer, 3);
	close(mod);
	close(peer);

	/* PROTOCOL_ERROR (1): DATA on stream 0; and a zero WINDOW_UPDATE. */
	tunnel(&mod, &peer);
	start(mod, stream_defaults());
	send_frame(peer, 0, 0, 0, "bad", 3);
	expect_goaway(mod, peer, 1);
	close(mod);
	close(peer);
	tunnel(&mod, &peer);
	start(mod, stream_defaults());
	send_frame(peer, 8, 0, 0, "\0\0\0\0", 4);
	expect_goaway(mod, peer, 1);
	close(mod);
	close(peer);

	/* Noise: whatever it parses as, an error or a fallback, never a crash. */
	for (int k = 0; k < 20; k++) {
		unsigned char noise[64];
		char b[8];

		tunnel(&mod, &peer);
		start(mod, stream_defaults());
		srand(k);
		for (unsigned i = 0; i < sizeof(noise); i++)
			noise[i] = rand();
		write_all(peer, noise, sizeof(noise));
		shutdown(peer, SHUT_WR);
		ssize_t r;

		while ((r = read(mod, b, sizeof(b))) > 0)
			;
		CHECK(r == 0 || errno == EPROTO || errno == ENOMSG, "noise %d: read %zd", k, r);
		close(mod);
		close(peer);
	}
}

/* The interface refuses what it cannot do. */
static void case_refusals(void)
{
	struct skein_hbone_stream s = stream_defaults();
	int mod, peer, fd;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(setsockopt(fd, IPPROTO_TCP, TCP_ULP, SKEIN_HBONE_ULP_NAME, strlen(SKEIN_HBONE_ULP_NAME)) == -1 &&
	      errno == ENOTCONN, "ULP on an unconnected socket");
	close(fd);
	tunnel(&mod, &peer);
	CHECK(setsockopt(mod, IPPROTO_TCP, TCP_ULP, "skein_hbone", 11) == -1 && errno == EEXIST, "second ULP");
	s.stream_id = 0;
	CHECK(setsockopt(mod, SOL_SKEIN_HBONE, SKEIN_HBONE_STREAM, &s, sizeof(s)) == -1 && errno == EINVAL, "stream 0");
	s = stream_defaults();
	s.max_frame_size = 100;
	CHECK(setsockopt(mod, SOL_SKEIN_HBONE, SKEIN_HBONE_STREAM, &s, sizeof(s)) == -1 && errno == EINVAL, "max frame 100");
	CHECK(setsockopt(mod, SOL_SKEIN_HBONE, SKEIN_HBONE_STREAM, &s, 4) == -1 && errno == EINVAL, "short option");
	start(mod, stream_defaults());
	s = stream_defaults();
	CHECK(setsockopt(mod, SOL_SKEIN_HBONE, SKEIN_HBONE_STREAM, &s, sizeof(s)) == -1 && errno == EBUSY, "second STREAM");
	if (!use_tls)
		CHECK(setsockopt(mod, IPPROTO_TCP, TCP_ULP, "tls", 3) == -1 && errno == EEXIST, "tls after framing");
	/* Ordinary options still reach TCP. */
	int one = 1;

	CHECK(setsockopt(mod, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0, "TCP_NODELAY");
	close(mod);
	close(peer);
}

/* Holds a live tunnel until killed: the shell checks rmmod is refused meanwhile. */
static void case_hold(void)
{
	int mod, peer;

	tunnel(&mod, &peer);
	start(mod, stream_defaults());
	printf("held\n");
	fflush(stdout);
	alarm(0);
	pause();
}

int main(int argc, char **argv)
{
	struct { const char *name; void (*fn)(void); } cases[] = {
		{ "roundtrip", case_roundtrip }, { "window", case_window }, { "ping", case_ping },
		{ "recv_window", case_recv_window }, { "half_close", case_half_close }, { "tls_control", case_tls_control }, { "fallback", case_fallback },
		{ "garbage", case_garbage }, { "refusals", case_refusals }, { "hold", case_hold },
	};

	if (argc != 3 || (strcmp(argv[2], "plain") && strcmp(argv[2], "tls"))) {
		fprintf(stderr, "usage: %s CASE plain|tls\n", argv[0]);
		return 2;
	}
	case_name = argv[1];
	mode_name = argv[2];
	use_tls = strcmp(argv[2], "tls") == 0;
	signal(SIGALRM, on_alarm);
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	alarm(30);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (strcmp(cases[i].name, case_name) == 0) {
			cases[i].fn();
			printf("ok - %s/%s\n", case_name, mode_name);
			return 0;
		}
	}
	fprintf(stderr, "no case %s\n", case_name);
	return 2;
}
