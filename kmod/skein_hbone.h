/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * skein_hbone: the interface between Skein (userspace) and the kernel module
 * that carries an established HBONE tunnel's HTTP/2 DATA frames over kTLS.
 */
#ifndef SKEIN_HBONE_H
#define SKEIN_HBONE_H

#include <linux/types.h>

/* The TCP upper-layer protocol name: setsockopt(IPPROTO_TCP, TCP_ULP, ...). */
#define SKEIN_HBONE_ULP_NAME "skein_hbone"

#endif /* SKEIN_HBONE_H */
