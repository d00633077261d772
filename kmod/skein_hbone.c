// SPDX-License-Identifier: GPL-2.0
/*
 * skein_hbone: a TCP upper-layer protocol (ULP) that will carry an
 * established HBONE tunnel's HTTP/2 DATA frames in the kernel, above kTLS.
 * This first step registers the ULP and refuses sockets.
 */
#include <linux/module.h>
#include <net/tcp.h>

#include "skein_hbone.h"

static int skein_ulp_init(struct sock *sk)
{
	return -EOPNOTSUPP;
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
