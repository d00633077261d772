// SPDX-License-Identifier: Apache-2.0
// A listener the engine accepts on (a pod's 15001, Engine::Listen): each
// connection is parked with its source and original destination and
// reported to TypeScript (kAccept), which decides and then hands it to a
// tunnel (outbound with `accepted`) or takes it for Node (release). Node
// never makes a socket object for a connection the engine carries.
#pragma once

#include <cstdint>

#include "engine.h"
#include "worker.h"

namespace skein::hbone {

class Acceptor : public Handler {
 public:
  Acceptor(Worker* w, ListenRequest& r);
  void OnEvents(uint32_t events) override;
  void Unlink() override;
  // Stops accepting; what the kernel still queues waits for the next owner
  // of the port (SO_REUSEPORT, tcp_migrate_req) or is reset.
  void Close();
  // Watches again after a rest for want of descriptors.
  void Tick();

  const uint32_t listener;

 private:
  // Connections per wake-up: a busy listener cannot starve the worker's
  // tunnels (level-triggered epoll brings the rest).
  static constexpr int kBatch = 64;
  void Report(Fd conn, const sockaddr_storage& peer);

  Worker* w_;
  Fd fd_;
  bool registered_ = false;
  // Out of descriptors (EMFILE, ENFILE, ENOBUFS, ENOMEM) a level-triggered
  // listener would wake the worker at once again: it rests until the
  // worker's next tick, the kernel's backlog holding the queue.
  bool resting_ = false;
};

}  // namespace skein::hbone
