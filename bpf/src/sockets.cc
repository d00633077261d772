// SPDX-License-Identifier: Apache-2.0
#include "sockets.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "errors.h"
#include "original_dst.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace skein {

namespace {

Napi::Object AddressObject(Napi::Env env, const sockaddr_storage& ss) {
  char text[INET6_ADDRSTRLEN] = {0};
  Napi::Object o = Napi::Object::New(env);
  if (ss.ss_family == AF_INET) {
    auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text);
    o.Set("family", 4);
    o.Set("port", ntohs(sin->sin_port));
  } else {
    auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text);
    o.Set("family", 6);
    o.Set("port", ntohs(sin6->sin6_port));
  }
  o.Set("address", text);
  return o;
}

int SocketFamily(Napi::Env env, int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0)
    ThrowErrno(env, "getsockname");
  return ss.ss_family;
}

Napi::Value SetIntOpt(const Napi::CallbackInfo& info) {
  static const char* usage =
      "setIntOpt(fd: number, level: number, name: number, value: number)";
  int fd = ArgFd(info, 0, usage);
  int level = ArgInt(info, 1, usage);
  int name = ArgInt(info, 2, usage);
  int value = ArgInt(info, 3, usage);
  if (setsockopt(fd, level, name, &value, sizeof value) < 0)
    ThrowErrno(info.Env(), "setsockopt");
  return info.Env().Undefined();
}

Napi::Value GetIntOpt(const Napi::CallbackInfo& info) {
  static const char* usage =
      "getIntOpt(fd: number, level: number, name: number)";
  int fd = ArgFd(info, 0, usage);
  int level = ArgInt(info, 1, usage);
  int name = ArgInt(info, 2, usage);
  int value = 0;
  socklen_t len = sizeof value;
  if (getsockopt(fd, level, name, &value, &len) < 0)
    ThrowErrno(info.Env(), "getsockopt");
  return Napi::Number::New(info.Env(), value);
}

Napi::Value Bind(const Napi::CallbackInfo& info) {
  static const char* usage =
      "bind(fd: number, address: string, port: number)";
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, usage);
  std::string address = ArgString(info, 1, usage);
  int port = ArgInt(info, 2, usage);
  if (port < 0 || port > 65535) ThrowUsage(env, usage);

  sockaddr_storage ss{};
  socklen_t len;
  auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, address.c_str(), &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    len = sizeof *sin;
  } else if (inet_pton(AF_INET6, address.c_str(), &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    len = sizeof *sin6;
  } else {
    Napi::TypeError e = Napi::TypeError::New(
        env, "bind: not an IPv4 or IPv6 address: '" + address + "'");
    e.Set("code", "ERR_INVALID_IP_ADDRESS");
    throw e;
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0)
    ThrowErrno(env, "bind", address + ":" + std::to_string(port));
  return env.Undefined();
}

Napi::Value Listen(const Napi::CallbackInfo& info) {
  static const char* usage = "listen(fd: number, backlog: number)";
  int fd = ArgFd(info, 0, usage);
  int backlog = ArgInt(info, 1, usage);
  if (listen(fd, backlog) < 0) ThrowErrno(info.Env(), "listen");
  return info.Env().Undefined();
}

Napi::Value LocalAddress(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "localAddress(fd: number)");
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0)
    ThrowErrno(info.Env(), "getsockname");
  if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
    throw ErrnoError(info.Env(), "getsockname", EAFNOSUPPORT,
                     "not an IP socket");
  return AddressObject(info.Env(), ss);
}

// The pre-NAT destination of an accepted socket (original_dst.h), for JavaScript.
Napi::Value OriginalDst(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "originalDst(fd: number)");
  int family = SocketFamily(env, fd);
  if (family != AF_INET && family != AF_INET6)
    throw ErrnoError(env, "getsockopt", EAFNOSUPPORT, "not an IP socket");
  sockaddr_storage ss{};
  if (GetOriginalDst(fd, family, &ss) < 0)
    ThrowErrno(env, "getsockopt",
               errno == ENOENT ? "SO_ORIGINAL_DST: no NAT entry" : "");
  return AddressObject(env, ss);
}

Napi::Value NetnsCookie(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "netnsCookie(fd: number)");
  uint64_t cookie = 0;
  socklen_t len = sizeof cookie;
  if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) < 0)
    ThrowErrno(info.Env(), "getsockopt", "SO_NETNS_COOKIE");
  return Napi::BigInt::New(info.Env(), cookie);
}

}  // namespace

void InitSockets(Napi::Env env, Napi::Object exports) {
  exports.Set("setIntOpt", Napi::Function::New(env, SetIntOpt, "setIntOpt"));
  exports.Set("getIntOpt", Napi::Function::New(env, GetIntOpt, "getIntOpt"));
  exports.Set("bind", Napi::Function::New(env, Bind, "bind"));
  exports.Set("listen", Napi::Function::New(env, Listen, "listen"));
  exports.Set("localAddress",
              Napi::Function::New(env, LocalAddress, "localAddress"));
  exports.Set("originalDst",
              Napi::Function::New(env, OriginalDst, "originalDst"));
  exports.Set("netnsCookie",
              Napi::Function::New(env, NetnsCookie, "netnsCookie"));

  // The numbers come from the C headers, so TypeScript never restates them.
  Napi::Object c = Napi::Object::New(env);
  auto set = [&](const char* name, int value) {
    c.Set(name, Napi::Number::New(env, value));
  };
  set("SOL_SOCKET", SOL_SOCKET);
  set("SOL_IP", SOL_IP);
  set("SOL_IPV6", SOL_IPV6);
  set("IPPROTO_TCP", IPPROTO_TCP);
  set("SO_MARK", SO_MARK);
  set("SO_REUSEADDR", SO_REUSEADDR);
  set("SO_REUSEPORT", SO_REUSEPORT);
  set("IP_TRANSPARENT", IP_TRANSPARENT);
  set("IP_FREEBIND", IP_FREEBIND);
  set("IPV6_TRANSPARENT", IPV6_TRANSPARENT);
  set("IPV6_FREEBIND", IPV6_FREEBIND);
  set("IPV6_V6ONLY", IPV6_V6ONLY);
  set("TCP_NODELAY", TCP_NODELAY);
  set("SO_KEEPALIVE", SO_KEEPALIVE);
  set("TCP_KEEPIDLE", TCP_KEEPIDLE);
  set("TCP_KEEPINTVL", TCP_KEEPINTVL);
  set("TCP_KEEPCNT", TCP_KEEPCNT);
  exports.Set("constants", c);
}

}  // namespace skein
