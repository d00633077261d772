// SPDX-License-Identifier: Apache-2.0
/*
 * Interop, inside the VM: an HBONE client whose tunnel is carried by the
 * kernel module, against Skein's userspace HBONE server (test/vm/hbone-peer.ts,
 * Node) in front of an echo server.
 *
 *   hbone_interop PORT CERTDIR BYTES
 *
 * The hand-over is the one skein_hbone.h describes: the skein_hbone ULP on
 * the connected socket; the TLS 1.3 handshake (mTLS, ALPN h2) with OpenSSL in
 * userspace; the traffic secrets (from OpenSSL's key log) become kTLS keys,
 * record sequence 0 both ways, since nothing was sent or read under them yet;
 * the HTTP/2 preface, SETTINGS and CONNECT in userspace over kTLS (skipping
 * the server's NewSessionTicket records by their record type); then the
 * stream goes to the module with the windows the server's frames gave. The
 * tunnel then carries BYTES each way through the kernel: written by one
 * thread, echoed by the server, read back and compared byte for byte.
 *
 * Checks the server's certificate chain against the root, not its SPIFFE
 * name: the identity checks are Skein's userspace and not tested here.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include "skein_hbone.h"

#include "ktls_h2.h"

struct writer { int fd; size_t total, written; int err; };

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	while (w->written < w->total) {
		size_t n = w->total - w->written;
		ssize_t r;

		if (n > 32768)
			n = 32768;
		r = write(w->fd, table + w->written % PERIOD, n);
		if (r <= 0) {
			w->err = errno;
			return NULL;
		}
		w->written += r;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char path[512], authority[64];
	unsigned char hdr[9], payload[16384], req[256];
	long long conn_win = 65535, stream_win = 65535, initial = 65535;
	int got_settings = 0, got_ack = 0, got_200 = 0, fd;
	const unsigned char alpn[] = "\x02h2";
	const unsigned char *sel;
	unsigned sel_len;
	size_t total;
	SSL_CTX *ctx;
	SSL *ssl;

	if (argc != 4) {
		fprintf(stderr, "usage: %s PORT CERTDIR BYTES\n", argv[0]);
		return 2;
	}
	test_name = "interop/node-server";
	signal(SIGALRM, on_alarm);
	signal(SIGPIPE, SIG_IGN);
	alarm(240);
	init_pattern();
	total = strtoull(argv[3], NULL, 10);
	a.sin_port = htons(atoi(argv[1]));
	fd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(connect(fd, (void *)&a, sizeof(a)) == 0, "connect");
	CHECK(setsockopt(fd, IPPROTO_TCP, TCP_ULP, SKEIN_HBONE_ULP_NAME, strlen(SKEIN_HBONE_ULP_NAME)) == 0, "TCP_ULP skein_hbone");

	/* 1. The handshake, in userspace, through the module (pass-through). */
	ctx = SSL_CTX_new(TLS_client_method());
	CHECK(ctx, "SSL_CTX_new");
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	CHECK(SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256") == 1, "ciphersuites");
	SSL_CTX_set_alpn_protos(ctx, alpn, 3);
	SSL_CTX_set_keylog_callback(ctx, keylog);
	snprintf(path, sizeof(path), "%s/client.pem", argv[2]);
	CHECK(SSL_CTX_use_certificate_chain_file(ctx, path) == 1, "client chain %s", path);
	snprintf(path, sizeof(path), "%s/client.key", argv[2]);
	CHECK(SSL_CTX_use_PrivateKey_file(ctx, path, SSL_FILETYPE_PEM) == 1, "client key");
	snprintf(path, sizeof(path), "%s/ca.pem", argv[2]);
	CHECK(SSL_CTX_load_verify_locations(ctx, path, NULL) == 1, "root");
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	CHECK(SSL_connect(ssl) == 1, "TLS handshake");
	SSL_get0_alpn_selected(ssl, &sel, &sel_len);
	CHECK(sel_len == 2 && memcmp(sel, "h2", 2) == 0, "ALPN h2 not selected");
	CHECK(have_client && have_server, "no traffic secrets from the key log");

	/* 2. kTLS below the module, keyed from the handshake. */
	CHECK(setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", 3) == 0, "TCP_ULP tls");
	set_ktls(fd, TLS_TX, client_secret);
	set_ktls(fd, TLS_RX, server_secret);

	/* 3. Preface, SETTINGS, CONNECT (HPACK: literal without indexing, static name). */
	snprintf(authority, sizeof(authority), "127.0.0.1:%s", argv[1]);
	size_t n = 0, al = strlen(authority);

	memcpy(req, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
	n = 24;
	n += put_our_settings(req + n);
	unsigned hb = 0;
	unsigned char block[128];

	block[hb++] = 0x02;	/* :method (static 2) */
	block[hb++] = 7;
	memcpy(block + hb, "CONNECT", 7);
	hb += 7;
	block[hb++] = 0x01;	/* :authority (static 1) */
	block[hb++] = al;
	memcpy(block + hb, authority, al);
	hb += al;
	put_frame(req + n, hb, 1, 0x4, 1);	/* HEADERS, END_HEADERS, stream 1 */
	n += 9;
	memcpy(req + n, block, hb);
	n += hb;
	write_all(fd, req, n);

	/* 4. The server's SETTINGS, its ACK of ours, window updates, the 200. */
	while (!(got_settings && got_ack && got_200)) {
		unsigned len, type, flags, sid;

		read_app(fd, hdr, 9);
		len = (hdr[0] << 16) | (hdr[1] << 8) | hdr[2];
		type = hdr[3];
		flags = hdr[4];
		sid = be32(hdr + 5) & 0x7fffffff;
		CHECK(len <= sizeof(payload), "frame of %u", len);
		read_app(fd, payload, len);
		if (type == 4 && (flags & 1)) {
			got_ack = 1;
		} else if (type == 4) {
			for (unsigned i = 0; i + 6 <= len; i += 6) {
				unsigned id = (payload[i] << 8) | payload[i + 1], v = be32(payload + i + 2);

				if (id == 4) {
					stream_win += (long long)v - initial;
					initial = v;
				}
			}
			got_settings = 1;
			put_frame(req, 0, 4, 1, 0);
			write_all(fd, req, 9);
		} else if (type == 8) {
			if (sid == 0)
				conn_win += be32(payload) & 0x7fffffff;
			else if (sid == 1)
				stream_win += be32(payload) & 0x7fffffff;
		} else if (type == 1 && sid == 1) {
			CHECK(len > 0 && payload[0] == 0x88, "CONNECT answered with other than 200 (first byte 0x%02x)", len ? payload[0] : 0);
			got_200 = 1;
		} else if (type == 6 && !(flags & 1)) {
			put_frame(req, 8, 6, 1, 0);
			memcpy(req + 9, payload, 8);
			write_all(fd, req, 17);
		} else if (type == 3 || type == 7) {
			fail("server sent %s", type == 3 ? "RST_STREAM" : "GOAWAY");
		}
	}

	/* 5. The stream goes to the kernel. */
	struct skein_hbone_stream s = {
		.stream_id = 1, .max_frame_size = 16384,
		.conn_send_window = conn_win, .stream_send_window = stream_win,
		.recv_window = RECV_STREAM_WINDOW, .conn_recv_avail = RECV_CONN_WINDOW, .stream_recv_avail = RECV_STREAM_WINDOW,
		.max_recv_frame_size = 16384,
	};

	CHECK(setsockopt(fd, SOL_SKEIN_HBONE, SKEIN_HBONE_STREAM, &s, sizeof(s)) == 0, "SKEIN_HBONE_STREAM");

	/* 6. BYTES through the echo and back, all framed by the module. */
	struct writer w = { .fd = fd, .total = total };
	pthread_t t;
	unsigned char in[PERIOD];
	size_t got = 0;
	long long cpu0 = cpu_ms();
	struct timespec t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	pthread_create(&t, NULL, writer_main, &w);
	while (got < total) {
		size_t want = total - got < PERIOD ? total - got : PERIOD;
		ssize_t r = read(fd, in, want);

		CHECK(r > 0, "tunnel read returned %zd after %zu of %zu bytes", r, got, total);
		CHECK(memcmp(in, table + got % PERIOD, r) == 0, "echoed bytes at %zu differ", got);
		got += r;
	}
	pthread_join(t, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long long cpu = cpu_ms() - cpu0;
	long long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;

	CHECK(w.written == total && w.err == 0, "writer: %zu bytes, errno %d", w.written, w.err);

	struct skein_hbone_info info;
	socklen_t il = sizeof(info);

	CHECK(getsockopt(fd, SOL_SKEIN_HBONE, SKEIN_HBONE_INFO, &info, &il) == 0, "SKEIN_HBONE_INFO");
	CHECK(info.mode == SKEIN_HBONE_MODE_FRAMING && info.tls == 1, "mode %u tls %u", info.mode, info.tls);
	CHECK(info.tx_bytes == total && info.rx_bytes == total, "counters tx %llu rx %llu",
	      (unsigned long long)info.tx_bytes, (unsigned long long)info.rx_bytes);
	printf("bench kmod bytes=%zu ms=%lld cpu_ms=%lld\n", total, ms, cpu);
	printf("ok - interop/node-server (%zu bytes each way; window updates sent %llu received %llu)\n", total,
	       (unsigned long long)info.window_updates_sent, (unsigned long long)info.window_updates_received);
	close(fd);
	return 0;
}
