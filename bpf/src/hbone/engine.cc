// SPDX-License-Identifier: Apache-2.0
#include "engine.h"

#include "worker.h"

#include <sys/socket.h>

namespace skein::hbone {

Engine::Engine(unsigned workers, Limits limits, Sink sink)
    : limits_(limits), sink_(std::move(sink)) {
  if (workers == 0) workers = 1;
  workers_.reserve(workers);
  for (unsigned i = 0; i < workers; i++)
    workers_.push_back(std::make_unique<Worker>(this, i));
}

Engine::~Engine() { Stop(); }

void Engine::Outbound(OutboundRequest req) {
  // A pool key lives on one worker, so its sessions need no lock.
  size_t i = std::hash<std::string>{}(req.pool_key) % workers_.size();
  workers_[i]->Post(std::move(req));
}

void Engine::Inbound(InboundRequest req) {
  workers_[req.session % workers_.size()]->PostInbound(std::move(req));
}

void Engine::Respond(Answer a) {
  workers_[a.session % workers_.size()]->PostAnswer(std::move(a));
}

void Engine::Control(struct Control c) {
  // An outbound tunnel lives on its pool key's worker, which only it knows.
  if (c.kind == Control::kCloseOutbound) {
    for (auto& w : workers_) w->PostControl(c);
    return;
  }
  // An inbound session, or a listener (kUnlisten), lives on the worker of its id.
  workers_[c.session % workers_.size()]->PostControl(std::move(c));
}

void Engine::SetCrls(std::shared_ptr<const CrlList> crls) {
  {
    std::lock_guard<std::mutex> lock(crls_mu_);
    crls_ = std::move(crls);
  }
  struct Control c;
  c.kind = Control::kRecheckCrls;
  for (auto& w : workers_) w->PostControl(c);
}

std::shared_ptr<const CrlList> Engine::crls() {
  std::lock_guard<std::mutex> lock(crls_mu_);
  return crls_;
}

void Engine::Listen(ListenRequest r) {
  listening_[r.listener] = r.fd.get();
  workers_[r.listener % workers_.size()]->PostListen(std::move(r));
}

void Engine::Unlisten(uint32_t listener) {
  auto it = listening_.find(listener);
  if (it == listening_.end()) return;
  // The fd is the acceptor's and stays open until the worker takes this
  // control; a listener shut down refuses new connections at once.
  shutdown(it->second, SHUT_RD);
  listening_.erase(it);
  struct Control c;
  c.kind = Control::kUnlisten;
  c.session = listener;
  workers_[listener % workers_.size()]->PostControl(std::move(c));
}

uint32_t Engine::Park(Fd fd) {
  std::lock_guard<std::mutex> lock(parked_mu_);
  // 1 … 2^31 - 1: JavaScript passes it back as a small integer.
  do {
    last_parked_ = last_parked_ >= 0x7fffffffu ? 1 : last_parked_ + 1;
  } while (parked_.count(last_parked_) != 0);
  uint32_t id = last_parked_;
  parked_.emplace(id, std::move(fd));
  return id;
}

Fd Engine::TakeAccepted(uint32_t id) {
  std::lock_guard<std::mutex> lock(parked_mu_);
  auto it = parked_.find(id);
  if (it == parked_.end()) return Fd();
  Fd fd = std::move(it->second);
  parked_.erase(it);
  return fd;
}

void Engine::Emit(Event e) {
  bool first;
  {
    std::lock_guard<std::mutex> lock(events_mu_);
    first = events_.empty();
    events_.push_back(std::move(e));
  }
  // One wake-up per batch: the JavaScript thread takes all that is queued.
  if (first) sink_();
}

std::vector<Event> Engine::TakeEvents() {
  std::vector<Event> out;
  std::lock_guard<std::mutex> lock(events_mu_);
  out.swap(events_);
  return out;
}

void Engine::Stop() {
  if (stopped_) return;
  stopped_ = true;
  // All told first: their last lingering closes overlap (Worker::AwaitLingers).
  for (auto& w : workers_) w->AskStop();
  for (auto& w : workers_) w->Stop();
  // Connections no decision reached: closed, as a stopped proxy's would be.
  std::lock_guard<std::mutex> lock(parked_mu_);
  parked_.clear();
}

}  // namespace skein::hbone
