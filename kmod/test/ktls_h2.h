/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the two interop programs share (hbone_interop.c, the client side,
 * and hbone_interop_server.c): failing a case, TLS 1.3 traffic secrets from
 * OpenSSL's key log turned into kTLS keys, HTTP/2 frame helpers, the payload
 * pattern and the CPU count. Header-only: each program is one static binary.
 */
#ifndef KTLS_H2_H
#define KTLS_H2_H

#include <errno.h>
#include <linux/tls.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* The "ok - NAME" line's name; set by main(). */
static const char *test_name = "interop";

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

static inline void fail(const char *fmt, ...)
{
	va_list ap;

	printf("not ok - %s: ", test_name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(" (errno %d %s)\n", errno, strerror(errno));
	ERR_print_errors_fp(stdout);
	fflush(stdout);
	exit(1);
}

#define CHECK(cond, ...) do { if (!(cond)) fail(__VA_ARGS__); } while (0)

static inline void on_alarm(int sig)
{
	(void)sig;
	fail("timed out");
}

/* --- TLS 1.3 secrets to kTLS keys (RFC 8446 section 7.1, 7.3) ------------ */

static unsigned char client_secret[32], server_secret[32];
static int have_client, have_server;

static inline int unhex(const char *s, unsigned char *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = v;
	}
	return 0;
}

static inline void keylog(const SSL *ssl, const char *line)
{
	const char *sp;

	(void)ssl;
	sp = strrchr(line, ' ');
	if (!sp || strlen(sp + 1) != 64)
		return;
	if (strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0)
		have_client = unhex(sp + 1, client_secret, 32) == 0;
	else if (strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0)
		have_server = unhex(sp + 1, server_secret, 32) == 0;
}

/* HKDF-Expand-Label(secret, label, "", len) with SHA-256; len <= 32, one block. */
static inline void expand_label(const unsigned char *secret, const char *label, unsigned char *out, unsigned len)
{
	unsigned char info[64], t[32];
	unsigned n = 0, tlen = 0;
	size_t l = strlen(label);

	info[n++] = 0;
	info[n++] = len;
	info[n++] = 6 + l;
	memcpy(info + n, "tls13 ", 6);
	n += 6;
	memcpy(info + n, label, l);
	n += l;
	info[n++] = 0;	/* empty context */
	info[n++] = 1;	/* T(1) = HMAC(secret, info || 0x01) */
	CHECK(HMAC(EVP_sha256(), secret, 32, info, n, t, &tlen) && tlen == 32, "HMAC");
	memcpy(out, t, len);
}

static inline void set_ktls(int fd, int dir, const unsigned char *secret)
{
	struct tls12_crypto_info_aes_gcm_128 ci = {};
	unsigned char key[16], iv[12];

	expand_label(secret, "key", key, 16);
	expand_label(secret, "iv", iv, 12);
	ci.info.version = TLS_1_3_VERSION;
	ci.info.cipher_type = TLS_CIPHER_AES_GCM_128;
	memcpy(ci.key, key, 16);
	memcpy(ci.salt, iv, 4);
	memcpy(ci.iv, iv + 4, 8);
	/* rec_seq 0: nothing was sent or read under these keys yet. */
	CHECK(setsockopt(fd, SOL_TLS, dir, &ci, sizeof(ci)) == 0, "SOL_TLS %d", dir);
}

/* ALPN for a server: h2 or nothing. */
static inline int select_h2(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
		     unsigned inlen, void *arg)
{
	(void)ssl;
	(void)arg;
	for (unsigned i = 0; i < inlen; i += 1 + in[i]) {
		if (in[i] == 2 && i + 3 <= inlen && memcmp(in + i + 1, "h2", 2) == 0) {
			*out = in + i + 1;
			*outlen = 2;
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* The receive windows Skein's HBONE code advertises (proxy/hbone/h2.ts,
 * ztunnel's HTTP2_STREAM_WINDOW_SIZE and HTTP2_CONNECTION_WINDOW_SIZE). */
#define RECV_STREAM_WINDOW (4u << 20)
#define RECV_CONN_WINDOW (16u << 20)

/* --- HTTP/2 in userspace until the stream is open -------------------------- */

static inline void write_all(int fd, const void *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		CHECK(w > 0, "write");
		p = (const char *)p + w;
		n -= w;
	}
}

/* Reads exactly n application-data bytes from the kTLS socket, skipping
 * other records (the server's NewSessionTicket handshake messages). */
static inline void read_app(int fd, unsigned char *p, size_t n)
{
	while (n > 0) {
		char cbuf[CMSG_SPACE(sizeof(unsigned char))];
		struct iovec iov = { p, n };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
		struct cmsghdr *c;
		unsigned char type = 23;
		ssize_t r = recvmsg(fd, &m, 0);

		CHECK(r > 0, "recvmsg: %zd", r);
		c = CMSG_FIRSTHDR(&m);
		if (c && c->cmsg_level == SOL_TLS && c->cmsg_type == TLS_GET_RECORD_TYPE)
			type = *(unsigned char *)CMSG_DATA(c);
		if (type != 23)
			continue;
		p += r;
		n -= r;
	}
}

static inline void put_frame(unsigned char *b, unsigned len, unsigned type, unsigned flags, unsigned sid)
{
	b[0] = len >> 16; b[1] = len >> 8; b[2] = len;
	b[3] = type; b[4] = flags;
	b[5] = sid >> 24; b[6] = sid >> 16; b[7] = sid >> 8; b[8] = sid;
}

/* Our SETTINGS (INITIAL_WINDOW_SIZE) and the connection WINDOW_UPDATE that
 * bring the windows to Skein's sizes: 9 + 6 + 9 + 4 bytes into b. */
static inline unsigned put_our_settings(unsigned char *b)
{
	unsigned inc = RECV_CONN_WINDOW - 65535, win = RECV_STREAM_WINDOW;

	put_frame(b, 6, 4, 0, 0);
	b[9] = 0; b[10] = 4;
	b[11] = win >> 24; b[12] = win >> 16; b[13] = win >> 8; b[14] = win;
	put_frame(b + 15, 4, 8, 0, 0);
	b[24] = inc >> 24; b[25] = inc >> 16; b[26] = inc >> 8; b[27] = inc;
	return 28;
}

static inline unsigned be32(const unsigned char *p)
{
	return ((unsigned)p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3];
}

/* The bytes a run carries: a table repeating every PERIOD bytes, as
 * test/vm/bench-pattern.ts, so making and checking them is a memcmp. */
#define PERIOD 65521
static unsigned char table[2 * PERIOD];

static inline void init_pattern(void)
{
	for (size_t j = 0; j < sizeof(table); j++) {
		size_t k = j % PERIOD;

		table[j] = (unsigned char)(k * 13 + (k >> 7));
	}
}

/* This process's CPU time, ms: user, and kernel time in its own syscalls
 * (the module's framing, kTLS's crypto on send and on receive). */
static inline long long cpu_ms(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000LL + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
}

#endif /* KTLS_H2_H */
