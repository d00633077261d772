// SPDX-License-Identifier: Apache-2.0
#include "engine.h"

#include "worker.h"

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
  workers_[c.session % workers_.size()]->PostControl(std::move(c));
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
}

}  // namespace skein::hbone
