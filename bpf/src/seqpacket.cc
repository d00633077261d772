// SPDX-License-Identifier: Apache-2.0
#include "seqpacket.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "errors.h"

namespace skein {

namespace {

// Room for a few fds, so that a peer sending more than one is detected and
// every fd it sent is closed rather than silently leaked.
constexpr size_t kMaxFdsSeen = 8;

sockaddr_un UnixAddress(Napi::Env env, const std::string& path,
                        const char* syscall) {
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof sun.sun_path)
    throw ErrnoError(env, syscall, ENAMETOOLONG,
                     "unix socket path must be 1-107 bytes: '" + path + "'");
  std::memcpy(sun.sun_path, path.data(), path.size());
  return sun;
}

int NewSeqpacket(Napi::Env env) {
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(env, "socket");
  return fd;
}

// seqpacketListen(path: string, backlog: number): number
Napi::Value SeqpacketListen(const Napi::CallbackInfo& info) {
  static const char* usage = "seqpacketListen(path: string, backlog: number)";
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, usage);
  int backlog = ArgInt(info, 1, usage);
  sockaddr_un sun = UnixAddress(env, path, "bind");
  int fd = NewSeqpacket(env);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) < 0 ||
      listen(fd, backlog) < 0) {
    int err = errno;
    close(fd);
    throw ErrnoError(env, "listen", err, path);
  }
  return Napi::Number::New(env, fd);
}

// seqpacketConnect(path: string): number
Napi::Value SeqpacketConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "seqpacketConnect(path: string)");
  sockaddr_un sun = UnixAddress(env, path, "connect");
  int fd = NewSeqpacket(env);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) < 0) {
    int err = errno;
    close(fd);
    throw ErrnoError(env, "connect", err, path);
  }
  return Napi::Number::New(env, fd);
}

// accept(fd: number): number | null   (null: nothing pending)
Napi::Value Accept(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "accept(fd: number)");
  int conn = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (conn < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return env.Null();
    ThrowErrno(env, "accept4");
  }
  return Napi::Number::New(env, conn);
}

// sendMessage(fd: number, data: Buffer, passFd: number): boolean
// Sends one message, with `passFd` attached unless it is -1. Returns false
// when the socket buffer is full (nothing was sent; try again when writable).
Napi::Value SendMessage(const Napi::CallbackInfo& info) {
  static const char* usage =
      "sendMessage(fd: number, data: Buffer, passFd: number)";
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, usage);
  if (info.Length() < 2 || !info[1].IsBuffer()) ThrowUsage(env, usage);
  auto data = info[1].As<Napi::Buffer<uint8_t>>();
  int pass = ArgInt(info, 2, usage);
  if (pass < -1) ThrowUsage(env, usage);

  iovec iov{data.Data(), data.Length()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (pass >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &pass, sizeof pass);
  }
  if (sendmsg(fd, &msg, MSG_NOSIGNAL) < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return Napi::Boolean::New(env, false);
    ThrowErrno(env, "sendmsg");
  }
  return Napi::Boolean::New(env, true);
}

// recvMessage(fd: number, maxLength: number):
//   { data: Buffer, fd: number, eof: boolean } | null   (null: nothing queued)
// A message longer than maxLength, or carrying more than one fd, is refused
// with EMSGSIZE / EPROTO after closing every fd it carried.
Napi::Value RecvMessage(const Napi::CallbackInfo& info) {
  static const char* usage = "recvMessage(fd: number, maxLength: number)";
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, usage);
  int max = ArgInt(info, 1, usage);
  if (max <= 0 || max > (1 << 20)) ThrowUsage(env, usage);

  auto data = Napi::Buffer<uint8_t>::New(env, max);
  iovec iov{data.Data(), static_cast<size_t>(max)};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsSeen)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return env.Null();
    ThrowErrno(env, "recvmsg");
  }

  int fds[kMaxFdsSeen];
  size_t nfds = 0;
  bool other_cmsg = false;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t j = 0; j < k && nfds < kMaxFdsSeen; j++)
        std::memcpy(&fds[nfds++], CMSG_DATA(c) + j * sizeof(int), sizeof(int));
    } else {
      other_cmsg = true;
    }
  }
  auto close_all = [&] {
    for (size_t j = 0; j < nfds; j++) close(fds[j]);
  };
  if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
    close_all();
    throw ErrnoError(env, "recvmsg", EMSGSIZE,
                     (msg.msg_flags & MSG_TRUNC)
                         ? "message longer than " + std::to_string(max) +
                               " bytes was truncated"
                         : "control data truncated");
  }
  if (nfds > 1 || other_cmsg) {
    close_all();
    throw ErrnoError(env, "recvmsg", EPROTO,
                     "expected at most one fd, got " + std::to_string(nfds) +
                         (other_cmsg ? " and other control data" : ""));
  }

  Napi::Object out = Napi::Object::New(env);
  out.Set("data", Napi::Buffer<uint8_t>::Copy(env, data.Data(), n));
  out.Set("fd", nfds == 1 ? fds[0] : -1);
  out.Set("eof", n == 0 && nfds == 0);
  return out;
}

}  // namespace

void InitSeqpacket(Napi::Env env, Napi::Object exports) {
  exports.Set("seqpacketListen",
              Napi::Function::New(env, SeqpacketListen, "seqpacketListen"));
  exports.Set("seqpacketConnect",
              Napi::Function::New(env, SeqpacketConnect, "seqpacketConnect"));
  exports.Set("accept", Napi::Function::New(env, Accept, "accept"));
  exports.Set("sendMessage",
              Napi::Function::New(env, SendMessage, "sendMessage"));
  exports.Set("recvMessage",
              Napi::Function::New(env, RecvMessage, "recvMessage"));
}

}  // namespace skein
