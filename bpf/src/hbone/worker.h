// SPDX-License-Identifier: Apache-2.0
// One engine worker: an epoll loop on its own thread that owns the pools of
// the keys hashed to it, their sessions (TLS + nghttp2) and their streams
// (one pod socket each). Nothing here is touched by another thread except
// Post() and Stop().
#pragma once

#include <nghttp2/nghttp2.h>
#include <sys/epoll.h>
#include <sys/uio.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine.h"

namespace skein::hbone {

class Worker;
class Session;
class Acceptor;

// Something registered with the worker's epoll.
class Handler {
 public:
  virtual ~Handler() = default;
  virtual void OnEvents(uint32_t events) = 0;
  // Leaves the worker's books; called just before delete.
  virtual void Unlink() = 0;
  bool dead = false;  // set when buried; its fd is already out of epoll
};

// A byte queue with one allocation, made on first use; `cap` bounds it.
// `lead` bytes are kept free before the data: the pod → peer queue writes an
// HTTP/2 frame header there, so a DATA frame leaves as one contiguous
// SSL_write with no copy of its payload (Stream::SendToPeer).
class ByteQueue {
 public:
  explicit ByteQueue(size_t cap, size_t lead = 0) : cap_(cap), lead_(lead), head_(lead), tail_(lead) {}
  size_t size() const { return tail_ - head_; }
  bool empty() const { return head_ == tail_; }
  size_t room() const { return cap_ - size(); }
  size_t capacity() const { return cap_; }
  // At least `cap` bytes of room in all, what is queued kept.
  void grow(size_t cap);
  const uint8_t* data() const { return buf_.get() + head_; }
  // The data with the `lead` bytes before it, writable (empty: no buffer yet).
  uint8_t* lead_data() { return buf_.get() + head_ - lead_; }
  // Space for up to room() bytes at the end; commit(n) after filling it.
  uint8_t* tail(size_t* len);
  void commit(size_t n) { tail_ += n; }
  void append(const uint8_t* p, size_t n);
  void drop(size_t n);

 private:
  void make_room();
  size_t cap_;
  size_t lead_;
  std::unique_ptr<uint8_t[]> buf_;
  size_t head_, tail_;
};

// One CONNECT tunnel: a pod socket and an HTTP/2 stream.
class Stream : public Handler {
 public:
  Stream(Worker* w, Session* s, OutboundRequest& req);
  // Inbound: a request on a 15008 session; its upstream comes with the answer.
  Stream(Worker* w, Session* s, uint32_t session_id, int32_t sid);
  void OnEvents(uint32_t events) override;
  void Unlink() override;

  // From the session's nghttp2 callbacks.
  void OnStatus(int status) { status_ = status; }
  // The largest DATA frame this stream makes (its pod → peer buffer).
  size_t UpCapacity() const { return up_.capacity(); }
  void OnResponse(bool end_stream);
  void OnData(const uint8_t* data, size_t len);
  void OnPeerEnd();
  void OnClosed(uint32_t error_code);
  ssize_t ReadForPeer(size_t len, uint32_t* flags);
  // nghttp2's send_data callback for the DATA frame ReadForPeer sized: the
  // header and `len` bytes of up_ go to TLS in one write.
  int SendToPeer(const uint8_t* framehd, size_t len);
  // The session is gone (error, GOAWAY past this stream, engine stop).
  void SessionGone(const std::string& why);
  // Inbound: one request header; false when the block is too large.
  bool OnRequestHeader(const uint8_t* name, size_t namelen, const uint8_t* value, size_t valuelen);
  // Inbound: the request's headers are complete.
  void OnRequest(bool end_stream);
  // Inbound: TypeScript's answer.
  void OnAnswer(Answer& a);
  bool answered() const { return opened_ || done_; }
  // Inbound: TypeScript closes the tunnel (a policy change revoked it);
  // one still connecting its upstream is answered 401.
  void Revoke(const std::string& why);
  // Inbound: a dial past its deadline fails (Session::Tick).
  void CheckDial(uint64_t now);
  // Ends the tunnel now: the peer gets RST_STREAM, the pod a FIN (Finish).
  void Abort(const std::string& why);
  // Writes what the session's read pass gathered for the pod.
  void FlushPod();
  void Unqueue() { queued_ = false; }
  // Chunks kept as places in the worker's read buffer (OnData) before a
  // FlushPod copies them; more than this and they go to down_ at once.
  static constexpr size_t kMaxIov = 64;

  int32_t sid = -1;
  Session* session;  // nullptr once the HTTP/2 stream is closed

 private:
  void SetMask(uint32_t mask);
  // Inbound: the 200 and its data provider, once the upstream is pod_.
  void Respond(const std::string& baggage);
  // Inbound: an error status, which ends the stream.
  void AnswerError(int status);
  // Inbound: TypeScript's dial (Answer::dial): the connect starts, the 200
  // waits for it (OnDialed).
  void StartDial(Answer& a);
  void OnDialed();
  // The dial failed: the client is answered `status`, TypeScript told why.
  void DialFailed(int status, const std::string& why);
  void ReadPod();
  void WritePod();
  void MaybeFinish();
  void Finish(const std::string& error);
  void DropDown();
  // Copies the places in iov_ into down_ (they go before any later byte).
  void KeepIov();
  void Emit(EventKind kind, int status, const char* flag, std::string message);

  Worker* w_;
  uint32_t id_;
  bool inbound_ = false;
  uint32_t session_id_ = 0;
  std::vector<std::string> fields_;  // inbound: method, authority, name, value, …
  size_t header_bytes_ = 0;
  Fd pod_;
  uint32_t mask_ = 0;
  bool registered_ = false;
  ByteQueue up_;    // pod → peer, waiting for the stream's send window
  ByteQueue down_;  // peer → pod, waiting for the pod socket
  // Peer → pod of the current read batch, still in the worker's read
  // buffer (only while down_ is empty; FlushPod empties it).
  std::vector<iovec> iov_;
  size_t iov_bytes_ = 0;
  int status_ = 0;
  bool opened_ = false, done_ = false;
  bool pod_eof_ = false, pod_shut_ = false, peer_end_ = false;
  bool h2_closed_ = false, deferred_ = false;
  bool queued_ = false;  // in the session's to_write_
  // Inbound, while the engine connects the upstream: the deadline, and what
  // the answer carries once connected.
  bool dialing_ = false;
  uint64_t dial_deadline_ = 0;
  std::string dial_to_, dial_header_, dial_baggage_;
  uint64_t sent_ = 0, recv_ = 0;
};

struct Pool {
  std::vector<Session*> sessions;   // ready; may be full or draining
  Session* opening = nullptr;       // first connects per key are serialised
  std::deque<OutboundRequest> waiting;
};

// One pooled HBONE client connection.
class Session : public Handler {
 public:
  Session(Worker* w, std::string key, const OutboundRequest& first);
  // Inbound: the server side of an accepted 15008 connection.
  Session(Worker* w, InboundRequest& req);
  ~Session() override;
  // Makes the socket in the pod netns and starts the connect; "" or why not.
  std::string Start(const OutboundRequest& first);
  void OnEvents(uint32_t events) override;
  void Unlink() override;

  bool CanTake() const { return state_ == kReady && usable && !retiring_ && active < limit; }
  void Open(OutboundRequest req);
  // Ends the session now: every stream on it ends with `why`.
  void Close(const char* flag, const std::string& why);
  void Flush();
  // One whole DATA frame (header included), from nghttp2's send_data
  // callback: 0 when taken (what the socket did not take waits in out_, and
  // *blocked is set), NGHTTP2_ERR_WOULDBLOCK when nothing could be (earlier
  // output still waits), NGHTTP2_ERR_CALLBACK_FAILURE when the session closed.
  int WriteFrame(const uint8_t* frame, size_t n, bool* blocked);
  void Tick(uint64_t now);
  void MarkDirty();
  bool Finished() const;

  const std::string key;
  bool usable = true;
  bool dirty = false;
  uint32_t limit = 1;
  uint32_t active = 0;
  nghttp2_session* h2 = nullptr;
  std::unordered_map<int32_t, Stream*> streams;

  // nghttp2 callbacks (static trampolines in worker.cc call these).
  int OnFrameRecv(const nghttp2_frame* frame);
  void OnStreamClose(int32_t sid, uint32_t code);
  void OnRequestBegin(int32_t sid);
  Stream* FindStream(int32_t sid) const;
  // Inbound: no new streams (GOAWAY); the session ends with its last stream.
  void Goaway();
  // Inbound: the TLS server handshake begins; "" or why it cannot.
  std::string StartServer();
  // A CRL reload (Control::kRecheckCrls): closes the session if the CRLs now revoke its peer's chain.
  void RecheckRevocation();
  bool server() const { return server_; }
  // A stream with bytes gathered for its pod during this read pass.
  void QueuePodWrite(Stream* st) { to_write_.push_back(st); }
  uint32_t session_id() const { return session_id_; }

 private:
  enum State { kConnecting, kHandshake, kSettings, kReady, kClosed };
  void SetMask(uint32_t mask);
  void Handshake();
  void StartH2();
  void ReadTls();
  // SSL_write of [p, p + n): 1 all taken, 0 the socket is full (*written
  // taken), -1 the session closed.
  int WriteTls(const uint8_t* p, size_t n, size_t* written);
  // out_ from out_off_; false when blocked or closed.
  bool DrainOut();
  // After a whole write: a KeyUpdate, with the next write, once this key
  // has sent key_update_records.
  void MaybeUpdateKeys();
  // "" or why the CRLs in force refuse the peer's verified chain (counted).
  std::string Revoked();
  std::string Target() const;

  Worker* w_;
  State state_ = kConnecting;
  Fd fd_;
  uint32_t mask_ = 0;
  SSL* ssl_ = nullptr;
  std::shared_ptr<Credential> cred_;
  std::vector<std::string> expected_;
  sockaddr_storage upstream_{};
  socklen_t upstream_len_ = 0;
  std::vector<uint8_t> out_;
  size_t out_off_ = 0;
  // WriteFrame stopped nghttp2 at a frame the socket did not take (Flush).
  bool paused_ = false;
  uint64_t deadline_ = 0, idle_since_ = 0, ping_sent_ = 0, last_ping_ = 0;
  bool became_ready_ = false, goaway_ = false, goaway_sent_ = false;
  // Outbound: it has opened its streams_per_connection. Flush takes it out
  // of the pool (Open runs inside the pool's loops), Tick ends it when its
  // streams are done.
  bool retiring_ = false;
  uint32_t opened_ = 0;
  // TLS records sent under the current key (an upper bound: a write's bytes
  // in whole records).
  uint64_t records_ = 0;
  bool server_ = false;
  uint32_t session_id_ = 0;
  std::string trust_domain_;
  std::vector<Stream*> to_write_;
};

// A pod socket the engine ends before the pod finished sending (an abort, a
// session gone, the engine stopping): closing it with bytes unread, or with
// more on the way, would answer the pod with a reset. It gets a FIN instead
// and what it still sends is read and dropped until its own FIN, for at most
// kLingerMs (nginx's lingering close).
class Linger : public Handler {
 public:
  static constexpr uint64_t kLingerMs = 2000;
  Linger(Worker* w, Fd fd, uint64_t now);
  void OnEvents(uint32_t events) override;
  void Unlink() override;
  // Past its time the socket closes as it is.
  void Tick(uint64_t now);

 private:
  void Done();
  Worker* w_;
  Fd fd_;
  bool registered_ = false;
  uint64_t deadline_;
};

class Worker {
 public:
  Worker(Engine* e, unsigned index);
  ~Worker();
  void Post(OutboundRequest req);  // any thread
  void PostInbound(InboundRequest req);
  void PostAnswer(Answer a);
  void PostControl(Control c);
  void PostListen(ListenRequest r);
  void AskStop();                  // any thread
  void Stop();                     // any thread; joins

  // Worker thread only.
  Engine* engine() const { return e_; }
  void Watch(Handler* h, int fd, uint32_t mask, bool* registered);
  void Dispatch(OutboundRequest req);
  void Accept(InboundRequest req);
  void Deliver(Answer a);
  void Apply(const Control& c);
  // An outbound tunnel ended by TypeScript: aborted (the pod gets a FIN), or
  // failed while it waits for its pooled connection.
  void CloseOutbound(uint32_t id, const std::string& why);
  void OnSessionReady(Session* s);
  void OnSessionFailed(Session* s, const char* flag, const std::string& why);
  void Unpool(Session* s);
  void Bury(Handler* h);
  void MarkDirty(Session* s) { dirty_.push_back(s); }
  void AddStream(Stream* s);
  // Closes a pod socket the pod may still be writing to (class Linger);
  // `shut`: its FIN was already sent.
  void CloseLingering(Fd fd, bool shut);
  int MakeUpstreamSocket(const OutboundRequest& r, std::string* err);
  // A non-blocking TCP socket made in `netns` (-1: the worker's own), with
  // SO_MARK (0: none), TCP_NODELAY and keepalive (time 0: off); -1 and *err.
  int MakeSocket(int family, int netns, uint32_t mark, uint32_t ka_time, uint32_t ka_interval,
                 uint32_t ka_retries, std::string* err);
  uint8_t* read_buf() { return read_buf_.get(); }
  static constexpr size_t kReadBuf = 256 * 1024;

 private:
  void Run();
  // One epoll_wait and its events dispatched; false when epoll failed.
  bool Poll(std::vector<epoll_event>* events, int timeout_ms);
  // Under mu_: whether this post must wake the worker (the first since it last took its inboxes).
  bool TakeWake();
  void Signal();
  void Drain(const std::string& key);
  void StartSession(const std::string& key);
  void Fail(OutboundRequest& req, int status, const char* flag, const std::string& why);
  void Shutdown();
  // Stopping: the lingering pod sockets get up to `ms` for their FIN.
  void AwaitLingers(uint64_t ms);
  static constexpr uint64_t kStopLingerMs = 1000;
  void DeleteGraves();

  Engine* e_;
  int epfd_ = -1;
  Fd evfd_;
  Fd self_netns_;
  std::mutex mu_;
  std::vector<OutboundRequest> inbox_;
  std::vector<InboundRequest> inbound_inbox_;
  std::vector<Answer> answers_;
  std::vector<Control> controls_;
  std::vector<ListenRequest> listens_;
  bool woken_ = false;  // an eventfd write is pending since the last take
  std::unordered_map<uint32_t, Session*> inbound_;  // by TypeScript's session id
  bool stop_ = false;
  std::unordered_map<std::string, Pool> pools_;
  std::unordered_set<Session*> sessions_;
  std::unordered_set<Stream*> streams_;
  std::unordered_map<uint32_t, Stream*> outbound_;  // by TypeScript's tunnel id
  std::unordered_set<Linger*> lingers_;
  std::unordered_map<uint32_t, Acceptor*> acceptors_;  // by TypeScript's listener id
  std::vector<Session*> dirty_;
  std::vector<Handler*> graves_;
  std::unique_ptr<uint8_t[]> read_buf_;
  std::thread thread_;

  friend class Session;
  friend class Stream;
  friend class Linger;
  friend class Acceptor;
  friend class Engine;
};

}  // namespace skein::hbone
