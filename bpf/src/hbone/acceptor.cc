// SPDX-License-Identifier: Apache-2.0
#include "acceptor.h"

#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "../original_dst.h"

namespace skein::hbone {

namespace {

void AppendAddress(const sockaddr_storage& ss, std::vector<std::string>* out) {
  char ip[INET6_ADDRSTRLEN] = "";
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip);
    port = ntohs(sin->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof ip);
    port = ntohs(sin6->sin6_port);
  }
  out->emplace_back(ip);
  out->push_back(ip[0] == '\0' ? "" : std::to_string(port));
}

}  // namespace

Acceptor::Acceptor(Worker* w, ListenRequest& r) : listener(r.listener), w_(w), fd_(std::move(r.fd)) {
  w_->Watch(this, fd_.get(), EPOLLIN, &registered_);
}

void Acceptor::OnEvents(uint32_t) {
  for (int i = 0; i < kBatch; i++) {
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    int fd = accept4(fd_.get(), reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      Report(Fd(fd), peer);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    // Shut down (Engine::Unlisten): its close is on the way.
    if (errno == EINVAL) w_->Watch(this, fd_.get(), 0, &registered_);
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
      w_->Watch(this, fd_.get(), 0, &registered_);
      resting_ = true;
    }
    return;  // EAGAIN: the queue is empty
  }
}

void Acceptor::Report(Fd conn, const sockaddr_storage& peer) {
  // Where the pod meant to go, before istio-cni's REDIRECT to 15001.
  sockaddr_storage dst{};
  std::string why;
  if (GetOriginalDst(conn.get(), peer.ss_family, &dst) < 0) {
    why = std::string("getsockopt SO_ORIGINAL_DST: ") + (errno == ENOENT ? "no NAT entry" : std::strerror(errno));
    dst.ss_family = AF_UNSPEC;
  }
  Event e{w_->engine()->Park(std::move(conn)), EventKind::kAccept, 0, "-", 0, 0, std::move(why)};
  e.session = listener;
  e.fields.reserve(4);
  AppendAddress(peer, &e.fields);
  AppendAddress(dst, &e.fields);
  w_->engine()->Emit(std::move(e));
}

void Acceptor::Tick() {
  if (!resting_) return;
  resting_ = false;
  w_->Watch(this, fd_.get(), EPOLLIN, &registered_);
}

void Acceptor::Close() {
  if (dead) return;
  w_->Watch(this, fd_.get(), 0, &registered_);
  w_->Bury(this);  // the fd closes when it is deleted
  // After every kAccept of it, which this worker emitted before.
  Event e{0, EventKind::kListenerClosed, 0, "-", 0, 0, ""};
  e.session = listener;
  w_->engine()->Emit(std::move(e));
}

void Acceptor::Unlink() {
  auto it = w_->acceptors_.find(listener);
  if (it != w_->acceptors_.end() && it->second == this) w_->acceptors_.erase(it);
}

}  // namespace skein::hbone
