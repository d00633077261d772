// SPDX-License-Identifier: Apache-2.0
// The destination a connection had before an iptables REDIRECT rewrote it
// (how the outbound capture learns where a pod meant to go): netfilter's
// getsockopt, shared by the eBPF addon (originalDst) and the HBONE engine's
// acceptor. The option numbers are spelled out because linux/netfilter_ipv4.h
// and ip6_tables.h clash with glibc's headers.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

namespace skein {

// 0 with *dst filled, or -1 with errno (ENOENT: no NAT entry).
inline int GetOriginalDst(int fd, int family, sockaddr_storage* dst) {
  socklen_t len = sizeof *dst;
  if (family == AF_INET6) return getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, dst, &len);
  return getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, dst, &len);
}

}  // namespace skein
