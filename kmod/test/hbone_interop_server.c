// SPDX-License-Identifier: Apache-2.0
/*
 * Interop, the other way round, inside the VM: an HBONE server whose tunnel
 * the kernel module carries, for Skein's userspace HBONE client
 * (test/vm/hbone-client.ts, Node) to connect to. It echoes the stream.
 *
 *   hbone_interop_server CERTDIR    prints "listening PORT", serves one tunnel
 *
 * The accepted socket gets the skein_hbone ULP before the handshake; OpenSSL
 * does the TLS 1.3 server handshake (requiring a client certificate from the
 * root, ALPN h2) and sends no session tickets, so both kTLS directions start
 * at record 0; the preface, SETTINGS and the CONNECT request are read over
 * kTLS in userspace, the 200 is sent, and once the client has acknowledged
 * our SETTINGS the stream goes to the module. Then every byte read is written
 * back until the client ends the stream or resets it (the module stops there:
 * ENOMSG). Prints "ok - interop/node-client (N bytes echoed)".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>

#include "skein_hbone.h"

#include "ktls_h2.h"

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	unsigned char hdr[9], payload[16384], out[64];
	long long conn_win = 65535, stream_win = 65535, initial = 65535;
	int got_headers = 0, got_ack = 0, l, fd;
	char path[512];
	const unsigned char *sel;
	unsigned sel_len;
	SSL_CTX *ctx;
	SSL *ssl;

	if (argc != 2) {
		fprintf(stderr, "usage: %s CERTDIR\n", argv[0]);
		return 2;
	}
	test_name = "interop/node-client";
	signal(SIGALRM, on_alarm);
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	alarm(240);
	l = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(l >= 0 && bind(l, (void *)&a, sizeof(a)) == 0 && listen(l, 1) == 0, "listen");
	CHECK(getsockname(l, (void *)&a, &alen) == 0, "getsockname");
	printf("listening %d\n", ntohs(a.sin_port));
	fd = accept(l, NULL, NULL);
	CHECK(fd >= 0, "accept");
	CHECK(setsockopt(fd, IPPROTO_TCP, TCP_ULP, SKEIN_HBONE_ULP_NAME, strlen(SKEIN_HBONE_ULP_NAME)) == 0, "TCP_ULP skein_hbone");

	ctx = SSL_CTX_new(TLS_server_method());
	CHECK(ctx, "SSL_CTX_new");
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	CHECK(SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256") == 1, "ciphersuites");
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_alpn_select_cb(ctx, select_h2, NULL);
	SSL_CTX_set_keylog_callback(ctx, keylog);
	snprintf(path, sizeof(path), "%s/server.pem", argv[1]);
	CHECK(SSL_CTX_use_certificate_chain_file(ctx, path) == 1, "server chain %s", path);
	snprintf(path, sizeof(path), "%s/server.key", argv[1]);
	CHECK(SSL_CTX_use_PrivateKey_file(ctx, path, SSL_FILETYPE_PEM) == 1, "server key");
	snprintf(path, sizeof(path), "%s/ca.pem", argv[1]);
	CHECK(SSL_CTX_load_verify_locations(ctx, path, NULL) == 1, "root");
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	CHECK(SSL_accept(ssl) == 1, "TLS handshake");
	SSL_get0_alpn_selected(ssl, &sel, &sel_len);
	CHECK(sel_len == 2 && memcmp(sel, "h2", 2) == 0, "ALPN h2 not selected");
	CHECK(have_client && have_server, "no traffic secrets from the key log");
	CHECK(setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", 3) == 0, "TCP_ULP tls");
	set_ktls(fd, TLS_TX, server_secret);
	set_ktls(fd, TLS_RX, client_secret);

	/* The client's preface, then our SETTINGS (defaults). */
	read_app(fd, payload, 24);
	CHECK(memcmp(payload, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24) == 0, "no HTTP/2 preface");
	write_all(fd, out, put_our_settings(out));
	while (!(got_headers && got_ack)) {
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
			put_frame(out, 0, 4, 1, 0);
			write_all(fd, out, 9);
		} else if (type == 8) {
			if (sid == 0)
				conn_win += be32(payload) & 0x7fffffff;
			else if (sid == 1)
				stream_win += be32(payload) & 0x7fffffff;
		} else if (type == 1) {
			/* The CONNECT (HPACK, not decoded here): answer :status 200. */
			CHECK(sid == 1 && (flags & 0x4) && !(flags & 0x1), "HEADERS sid %u flags 0x%x", sid, flags);
			put_frame(out, 1, 1, 0x4, 1);
			out[9] = 0x88;
			write_all(fd, out, 10);
			got_headers = 1;
		} else if (type == 6 && !(flags & 1)) {
			put_frame(out, 8, 6, 1, 0);
			memcpy(out + 9, payload, 8);
			write_all(fd, out, 17);
		} else if (type == 3 || type == 7) {
			fail("client sent %s", type == 3 ? "RST_STREAM" : "GOAWAY");
		}
	}

	struct skein_hbone_stream s = {
		.stream_id = 1, .max_frame_size = 16384,
		.conn_send_window = conn_win, .stream_send_window = stream_win,
		.recv_window = RECV_STREAM_WINDOW, .conn_recv_avail = RECV_CONN_WINDOW, .stream_recv_avail = RECV_STREAM_WINDOW,
		.max_recv_frame_size = 16384,
	};

	CHECK(setsockopt(fd, SOL_SKEIN_HBONE, SKEIN_HBONE_STREAM, &s, sizeof(s)) == 0, "SKEIN_HBONE_STREAM");

	/* Echo until the stream ends (EOF) or the client resets it (ENOMSG). */
	size_t echoed = 0;

	for (;;) {
		ssize_t r = read(fd, payload, sizeof(payload));

		if (r == 0 || (r < 0 && errno == ENOMSG))
			break;
		CHECK(r > 0, "tunnel read after %zu bytes", echoed);
		write_all(fd, payload, r);
		echoed += r;
	}
	struct skein_hbone_info info;
	socklen_t il = sizeof(info);

	CHECK(getsockopt(fd, SOL_SKEIN_HBONE, SKEIN_HBONE_INFO, &info, &il) == 0, "SKEIN_HBONE_INFO");
	CHECK(echoed > 0 && info.tx_bytes == echoed && info.rx_bytes == echoed, "echoed %zu, tx %llu rx %llu", echoed,
	      (unsigned long long)info.tx_bytes, (unsigned long long)info.rx_bytes);
	printf("ok - interop/node-client (%zu bytes echoed; ended by %s)\n", echoed,
	       info.mode == SKEIN_HBONE_MODE_FALLBACK ? "a frame for userspace" : "END_STREAM");
	close(fd);
	return 0;
}
