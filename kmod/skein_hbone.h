/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * skein_hbone: the interface between Skein (userspace) and the kernel module
 * that carries an established HBONE tunnel's HTTP/2 DATA frames over kTLS.
 * Shared by kmod/skein_hbone.c, the VM test programs (kmod/test/) and, for
 * its ULP name, ztunnel-compat/src/accel/kmod.ts (checked by its test).
 *
 * Hand-over, on a connected TCP socket (docs/kernel.md has the whole story):
 *   1. setsockopt(IPPROTO_TCP, TCP_ULP, "skein_hbone")   the module takes it,
 *      every read and write still passes through unchanged;
 *   2. the TLS 1.3 handshake in userspace, then setsockopt(IPPROTO_TCP,
 *      TCP_ULP, "tls") and SOL_TLS TLS_TX / TLS_RX as for any kTLS socket:
 *      the module slides the kernel's tls below itself;
 *   3. the HTTP/2 preface, SETTINGS and the CONNECT stream in userspace;
 *   4. setsockopt(SOL_SKEIN_HBONE, SKEIN_HBONE_STREAM, &stream): from now on
 *      a write is sent as DATA frames on that stream and a read returns the
 *      stream's DATA payload; WINDOW_UPDATE and PING are answered in the
 *      kernel (RFC 9113 sections 6.9 and 6.7).
 * Any other frame (or a TLS record that is not application data) stops the
 * module before it: reads return what DATA came before it, then fail with
 * ENOMSG; userspace reads SKEIN_HBONE_INFO (the flow-control windows), sets
 * SKEIN_HBONE_DETACH and reads the rest of the connection raw, starting with
 * that frame's first byte. A peer that breaks the protocol (bad frame size,
 * flow-control violation, DATA on stream 0) gets GOAWAY and the connection
 * is shut down; reads and writes fail with EPROTO.
 */
#ifndef SKEIN_HBONE_H
#define SKEIN_HBONE_H

#include <linux/types.h>

/* The TCP upper-layer protocol name: setsockopt(IPPROTO_TCP, TCP_ULP, ...). */
#define SKEIN_HBONE_ULP_NAME "skein_hbone"

/* The setsockopt/getsockopt level the module answers on a socket it holds
 * ("SK"; the kernel's own SOL_* numbers are below 300). */
#define SOL_SKEIN_HBONE 0x534b

/* setsockopt: struct skein_hbone_stream; starts framing. */
#define SKEIN_HBONE_STREAM 1
/* getsockopt: struct skein_hbone_info. */
#define SKEIN_HBONE_INFO 2
/* setsockopt (no value): back to pass-through after a fallback (ENOMSG). */
#define SKEIN_HBONE_DETACH 3

/* What userspace knows of the HTTP/2 connection when it hands the stream over. */
struct skein_hbone_stream {
	__u32 stream_id;	/* the CONNECT stream (1 .. 2^31-1) */
	__u32 max_frame_size;	/* peer's SETTINGS_MAX_FRAME_SIZE: largest DATA we send */
	__s64 conn_send_window;	/* what the peer still lets us send, connection */
	__s64 stream_send_window; /* ... and stream */
	__u32 recv_window;	/* the window we advertised (initial; stream and connection) */
	__u32 conn_recv_avail;	/* what the peer may still send us now, connection */
	__u32 stream_recv_avail; /* ... and stream */
	__u32 max_recv_frame_size; /* our SETTINGS_MAX_FRAME_SIZE (16384 unless we said more) */
};

#define SKEIN_HBONE_MODE_PASSTHROUGH 0
#define SKEIN_HBONE_MODE_FRAMING 1
#define SKEIN_HBONE_MODE_FALLBACK 2	/* met a frame it does not handle; reads fail ENOMSG */
#define SKEIN_HBONE_MODE_ERROR 3	/* peer broke the protocol; GOAWAY sent */

struct skein_hbone_info {
	__u32 mode;
	__u32 tls;		/* 1 once kTLS sits below the module */
	__u32 fallback_frame_type; /* the frame type that caused the fallback (256: a TLS control record) */
	__u32 goaway_error;	/* the HTTP/2 error code sent in GOAWAY, mode ERROR */
	__s64 conn_send_window;
	__s64 stream_send_window;
	__s64 conn_recv_avail;
	__s64 stream_recv_avail;
	__u64 tx_bytes;		/* DATA payload sent */
	__u64 rx_bytes;		/* DATA payload delivered */
	__u64 pings_acked;
	__u64 window_updates_sent;
	__u64 window_updates_received;
	__u32 raw_pending;	/* raw bytes held for userspace after a fallback */
	__u32 pad;
};

#endif /* SKEIN_HBONE_H */
