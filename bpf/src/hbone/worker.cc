// SPDX-License-Identifier: Apache-2.0
#include "worker.h"

#include "acceptor.h"

#include "ktls.h"

#include <fcntl.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <openssl/err.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace skein::hbone {

namespace {

// HTTP/2 settings as the JavaScript client's (proxy/hbone/h2.ts, from
// ztunnel's src/proxy/h2.rs): stream and connection windows, frame size,
// header list size, no push.
constexpr int32_t kStreamWindow = 4 * 1024 * 1024;
constexpr int32_t kConnectionWindow = 16 * 1024 * 1024;
constexpr uint32_t kMaxFrame = 1024 * 1024;
constexpr uint32_t kMaxHeaderList = 16 * 1024;
constexpr uint32_t kServerMaxConcurrentStreams = 200;
// An HTTP/2 frame header (RFC 9113 §4.1).
constexpr size_t kFrameHeader = 9;
// TLS 1.3's largest record payload (OpenSSL's default max_send_fragment).
constexpr size_t kRecord = 16 * 1024;
// Pod → peer bytes held per stream while the peer's window is shut. Small:
// it is per stream, and the stream window behind it is 4 MiB. Sized so that
// a full DATA frame, header included, is exactly four full TLS records.
constexpr size_t kUpBuffer = 4 * kRecord - kFrameHeader;
// A stream that has sent a whole stream window is a bulk transfer: from then
// on it reads and frames sixteen records at a time (ztunnel's copy buffers
// grow to 256 KiB the same way, by bytes moved), so a pass, a write(2) and a
// wake-up of the peer carry four times the bytes. Only such streams pay the
// memory.
constexpr size_t kUpJumbo = 16 * kRecord - kFrameHeader;
constexpr uint64_t kJumboAfter = kStreamWindow;
// Gather this much HTTP/2 output (control frames, small DATA) before one
// SSL_write.
constexpr size_t kOutGather = 64 * 1024;
// DATA frames smaller than this are gathered with the rest: many streams'
// small frames (requests and responses) share records instead of one
// record each. Larger ones go to SSL_write from the stream's buffer.
constexpr size_t kDirectWrite = 4096;

uint64_t NowMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

std::string Errno(const char* what, int err) {
  return std::string(what) + ": " + std::strerror(err);
}

std::string AddrText(const sockaddr_storage& ss) {
  char text[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(ntohs(sin->sin_port));
  }
  auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
  inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text);
  std::string out(1, '[');
  out.append(text);
  out.append("]:");
  out.append(std::to_string(ntohs(sin6->sin6_port)));
  return out;
}

// Before each SSL call, so SSL_get_error sees only its errors. Cleared only
// when there is something: ERR_clear_error walks every slot of the queue,
// and per record that was a few percent of the engine's time.
inline void ClearErrors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

Session* SessionOf(void* user) { return static_cast<Session*>(user); }

Stream* StreamOf(nghttp2_session* h2, int32_t sid) {
  return static_cast<Stream*>(nghttp2_session_get_stream_user_data(h2, sid));
}

int OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  Session* s = SessionOf(user);
  if (s->server() && frame->hd.type == NGHTTP2_HEADERS &&
      frame->headers.cat == NGHTTP2_HCAT_REQUEST)
    s->OnRequestBegin(frame->hd.stream_id);
  return 0;
}

int OnHeader(nghttp2_session* h2, const nghttp2_frame* frame,
             const uint8_t* name, size_t namelen, const uint8_t* value,
             size_t valuelen, uint8_t, void*) {
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    Stream* st = StreamOf(h2, frame->hd.stream_id);
    if (st != nullptr && !st->OnRequestHeader(name, namelen, value, valuelen))
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets the stream
    return 0;
  }
  if (frame->headers.cat != NGHTTP2_HCAT_RESPONSE) return 0;
  Stream* st = StreamOf(h2, frame->hd.stream_id);
  if (st == nullptr) return 0;
  if (namelen == 7 && std::memcmp(name, ":status", 7) == 0) {
    int status = 0;
    for (size_t i = 0; i < valuelen && i < 3; i++) {
      if (value[i] < '0' || value[i] > '9') return 0;
      status = status * 10 + (value[i] - '0');
    }
    st->OnStatus(status);
  }
  return 0;
}

int OnFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  return SessionOf(user)->OnFrameRecv(frame);
}

int OnDataChunk(nghttp2_session* h2, uint8_t, int32_t sid, const uint8_t* data,
                size_t len, void*) {
  Stream* st = StreamOf(h2, sid);
  if (st == nullptr) {
    // A stream we have let go of: its bytes still count against the
    // connection window, which we give back at once.
    nghttp2_session_consume_connection(h2, len);
    return 0;
  }
  st->OnData(data, len);
  return 0;
}

int OnStreamClose(nghttp2_session*, int32_t sid, uint32_t code, void* user) {
  SessionOf(user)->OnStreamClose(sid, code);
  return 0;
}

ssize_t ReadData(nghttp2_session*, int32_t, uint8_t*, size_t len,
                 uint32_t* flags, nghttp2_data_source* src, void*) {
  return static_cast<Stream*>(src->ptr)->ReadForPeer(len, flags);
}

int SendData(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd, size_t len,
             nghttp2_data_source* src, void*) {
  // No padding is ever asked for (no select_padding callback).
  if (frame->data.padlen != 0) return NGHTTP2_ERR_CALLBACK_FAILURE;
  return static_cast<Stream*>(src->ptr)->SendToPeer(framehd, len);
}

ssize_t DataLength(nghttp2_session*, uint8_t, int32_t stream_id, int32_t, int32_t,
                   uint32_t remote_max_frame_size, void* user_data) {
  // DATA frames as large as the peer allows, up to what the stream buffers:
  // per frame, nghttp2's work and the one TLS record that is not full are
  // paid once per 64 KiB (256 KiB for a bulk stream) instead of once per
  // 16 KiB. nghttp2 clamps this to the windows.
  Stream* st = static_cast<Session*>(user_data)->FindStream(stream_id);
  size_t cap = st == nullptr ? kUpBuffer : st->UpCapacity();
  return static_cast<ssize_t>(std::min<size_t>(remote_max_frame_size, cap));
}

nghttp2_session_callbacks* Callbacks() {
  static nghttp2_session_callbacks* cbs = [] {
    nghttp2_session_callbacks* c = nullptr;
    if (nghttp2_session_callbacks_new(&c) != 0) std::abort();
    nghttp2_session_callbacks_set_on_begin_headers_callback(c, OnBeginHeaders);
    nghttp2_session_callbacks_set_on_header_callback(c, OnHeader);
    nghttp2_session_callbacks_set_on_frame_recv_callback(c, OnFrameRecv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(c, OnDataChunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(c, OnStreamClose);
    nghttp2_session_callbacks_set_send_data_callback(c, SendData);
    nghttp2_session_callbacks_set_data_source_read_length_callback(c, DataLength);
    return c;
  }();
  return cbs;
}

nghttp2_option* Options(uint32_t max_streams) {
  nghttp2_option* o = nullptr;
  if (nghttp2_option_new(&o) != 0) std::abort();
  // Window updates follow what the pod socket has taken (flow control
  // reaches the pod), not what nghttp2 has parsed.
  nghttp2_option_set_no_auto_window_update(o, 1);
  nghttp2_option_set_peer_max_concurrent_streams(o, max_streams);
  nghttp2_option_set_max_send_header_block_length(o, 64 * 1024);
  return o;
}

// The TLS socket's read side: one read(2) of up to kReadAhead into a buffer
// of the session's, from which OpenSSL (read-ahead off) takes each record's
// header and body with a memcpy. Read-ahead on a socket BIO reads as much
// per read(2), but OpenSSL then moves what is left of its buffer to the
// front before every record: more than a record's worth of memmove per record.
constexpr size_t kReadAhead = 128 * 1024;

struct ReadAhead {
  int fd;
  size_t head = 0, tail = 0;
  std::unique_ptr<uint8_t[]> buf;  // made on the first read
};

int ReadAheadRead(BIO* b, char* out, int len) {
  auto* r = static_cast<ReadAhead*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  if (len <= 0) return 0;
  if (r->head == r->tail) {
    if (!r->buf) r->buf.reset(new uint8_t[kReadAhead]);
    r->head = r->tail = 0;
    ssize_t n;
    // errno cleared first, as BIO_s_socket does: an EOF (0) then leaves 0,
    // which ReadTls reads as "closed the connection".
    do {
      errno = 0;
      n = read(r->fd, r->buf.get(), kReadAhead);
    } while (n < 0 && errno == EINTR);
    // As BIO_s_socket: EAGAIN is a retry, 0 is EOF (BIO_eof), else an error
    // with errno left for the caller's message.
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_read(b);
      return -1;
    }
    if (n == 0) {
      BIO_set_flags(b, BIO_FLAGS_IN_EOF);
      return 0;
    }
    r->tail = static_cast<size_t>(n);
  }
  size_t k = std::min(static_cast<size_t>(len), r->tail - r->head);
  std::memcpy(out, r->buf.get() + r->head, k);
  r->head += k;
  return static_cast<int>(k);
}

long ReadAheadCtrl(BIO* b, int cmd, long, void*) {
  auto* r = static_cast<ReadAhead*>(BIO_get_data(b));
  switch (cmd) {
    case BIO_CTRL_EOF:
      return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0 ? 1 : 0;
    case BIO_CTRL_PENDING:
      return r == nullptr ? 0 : static_cast<long>(r->tail - r->head);
    case BIO_CTRL_FLUSH:
      return 1;
    default:
      return 0;  // no kTLS, no other controls: as an unsupported ctrl
  }
}

int ReadAheadDestroy(BIO* b) {
  delete static_cast<ReadAhead*>(BIO_get_data(b));
  BIO_set_data(b, nullptr);
  return 1;
}

const BIO_METHOD* ReadAheadMethod() {
  static BIO_METHOD* m = [] {
    BIO_METHOD* bm = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "skein read-ahead");
    if (bm == nullptr || BIO_meth_set_read(bm, ReadAheadRead) != 1 ||
        BIO_meth_set_ctrl(bm, ReadAheadCtrl) != 1 || BIO_meth_set_destroy(bm, ReadAheadDestroy) != 1)
      std::abort();
    return bm;
  }();
  return m;
}

// The write side goes through a buffer that Session::Flush empties once per
// pass, so a flush of 64 KiB of HTTP/2 is one write(2) of four records, not
// four: one skb through the stack (netfilter, veth, the peer's receive path)
// instead of four. Room for two jumbo frames: a bulk stream's frame goes out
// in one write too. Allocated per session, touched only as far as used.
constexpr int kWriteBuffer = static_cast<int>(2 * (kUpJumbo + kFrameHeader) + 1024);

bool AttachSocket(SSL* ssl, int fd) {
  BIO* rd = BIO_new(ReadAheadMethod());
  BIO* sock = BIO_new_socket(fd, BIO_NOCLOSE);
  BIO* buf = BIO_new(BIO_f_buffer());
  if (rd == nullptr || sock == nullptr || buf == nullptr || BIO_set_write_buffer_size(buf, kWriteBuffer) != 1) {
    BIO_free(rd);
    BIO_free(sock);
    BIO_free(buf);
    return false;
  }
  auto* r = new ReadAhead();
  r->fd = fd;
  BIO_set_data(rd, r);
  BIO_set_init(rd, 1);
  BIO_push(buf, sock);
  // SSL_free frees both chains. Our buffer is the read-ahead.
  SSL_set_bio(ssl, rd, buf);
  SSL_set_read_ahead(ssl, 0);
  return true;
}

}  // namespace

// ---------------------------------------------------------------- Fd

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    reset();
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

Fd::~Fd() { reset(); }

void Fd::reset() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

// ---------------------------------------------------------------- ByteQueue

void ByteQueue::make_room() {
  if (!buf_) buf_.reset(new uint8_t[lead_ + cap_]);
  if (head_ == tail_) {
    head_ = tail_ = lead_;
  } else if (tail_ == lead_ + cap_ && head_ > lead_) {
    std::memmove(buf_.get() + lead_, buf_.get() + head_, tail_ - head_);
    tail_ -= head_ - lead_;
    head_ = lead_;
  }
}

uint8_t* ByteQueue::tail(size_t* len) {
  make_room();
  *len = lead_ + cap_ - tail_;
  return buf_.get() + tail_;
}

void ByteQueue::append(const uint8_t* p, size_t n) {
  make_room();
  if (lead_ + cap_ - tail_ < n) {
    // Grow: `down` does (the stream window bounds it), and `up` for what
    // Node read before the hand-over.
    size_t need = size() + n;
    size_t cap = std::max(cap_ * 2, need);
    std::unique_ptr<uint8_t[]> b(new uint8_t[lead_ + cap]);
    std::memcpy(b.get() + lead_, buf_.get() + head_, size());
    tail_ = lead_ + size();
    head_ = lead_;
    buf_ = std::move(b);
    cap_ = cap;
  }
  std::memcpy(buf_.get() + tail_, p, n);
  tail_ += n;
}

void ByteQueue::grow(size_t cap) {
  if (cap <= cap_) return;
  cap_ = cap;
  if (!buf_) return;  // made at its first use, at the new size
  std::unique_ptr<uint8_t[]> b(new uint8_t[lead_ + cap]);
  std::memcpy(b.get() + lead_, buf_.get() + head_, size());
  tail_ = lead_ + size();
  head_ = lead_;
  buf_ = std::move(b);
}

void ByteQueue::drop(size_t n) {
  head_ += n;
  if (head_ == tail_) head_ = tail_ = lead_;
}

// ---------------------------------------------------------------- Stream

Stream::Stream(Worker* w, Session* s, OutboundRequest& req)
    : session(s), w_(w), id_(req.id), pod_(std::move(req.pod)),
      up_(kUpBuffer, kFrameHeader), down_(16 * 1024) {
  w_->outbound_[id_] = this;
  if (!req.initial.empty())
    up_.append(reinterpret_cast<const uint8_t*>(req.initial.data()), req.initial.size());
}

Stream::Stream(Worker* w, Session* s, uint32_t session_id, int32_t stream_id)
    : sid(stream_id), session(s), w_(w), id_(0), inbound_(true), session_id_(session_id),
      up_(kUpBuffer, kFrameHeader), down_(16 * 1024) {}

void Stream::Emit(EventKind kind, int status, const char* flag, std::string message) {
  Event e{id_, kind, status, flag, sent_, recv_, std::move(message)};
  if (inbound_) {
    // Inbound has no "fail": a request TypeScript heard of ends with a close.
    if (kind == EventKind::kFail) e.kind = EventKind::kClose;
    e.session = session_id_;
    e.stream = sid;
  }
  w_->engine()->Emit(std::move(e));
}

// SERVER_MAX_HEADER_LIST (proxy/hbone/h2.ts).
constexpr size_t kServerMaxHeaderList = 64 * 1024;

bool Stream::OnRequestHeader(const uint8_t* name, size_t namelen, const uint8_t* value, size_t valuelen) {
  // As HTTP/2 counts a header list: name + value + 32 each.
  header_bytes_ += namelen + valuelen + 32;
  if (header_bytes_ > kServerMaxHeaderList) return false;
  if (fields_.empty()) fields_.resize(2);
  std::string n(reinterpret_cast<const char*>(name), namelen);
  std::string v(reinterpret_cast<const char*>(value), valuelen);
  if (n == ":method") fields_[0] = std::move(v);
  else if (n == ":authority") fields_[1] = std::move(v);
  else if (!n.empty() && n[0] != ':') {
    fields_.push_back(std::move(n));
    fields_.push_back(std::move(v));
  }
  return true;
}

void Stream::OnRequest(bool end_stream) {
  if (fields_.empty()) fields_.resize(2);
  if (end_stream) peer_end_ = true;
  Event e{0, EventKind::kRequest, 0, "-", 0, 0, ""};
  e.session = session_id_;
  e.stream = sid;
  e.fields = std::move(fields_);
  fields_.clear();
  w_->engine()->Emit(std::move(e));
}

void Stream::OnAnswer(Answer& a) {
  if (opened_ || done_ || dialing_ || session == nullptr) {
    a.upstream.reset();
    return;
  }
  if (a.status == 200 && a.dial.to_len != 0) {
    StartDial(a);
    return;
  }
  if (a.status != 200) {
    a.upstream.reset();
    AnswerError(a.status);
    return;
  }
  pod_ = std::move(a.upstream);
  if (!a.initial.empty()) up_.append(reinterpret_cast<const uint8_t*>(a.initial.data()), a.initial.size());
  Respond(a.baggage);
}

void Stream::AnswerError(int status) {
  // An error answer ends the stream (END_STREAM on the HEADERS).
  status_ = status;
  done_ = true;
  DropDown();
  if (session == nullptr) return;
  std::string code = std::to_string(status);
  static const std::string kStatus = ":status";
  nghttp2_nv nv{reinterpret_cast<uint8_t*>(const_cast<char*>(kStatus.data())),
                reinterpret_cast<uint8_t*>(code.data()), kStatus.size(), code.size(), NGHTTP2_NV_FLAG_NONE};
  nghttp2_submit_response(session->h2, sid, &nv, 1, nullptr);
  session->MarkDirty();
}

void Stream::Respond(const std::string& baggage) {
  static const std::string kStatus = ":status", k200 = "200", kBaggage = "baggage";
  std::vector<nghttp2_nv> nva;
  auto add = [&](const std::string& n, const std::string& v) {
    nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                   reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                   NGHTTP2_NV_FLAG_NONE});
  };
  add(kStatus, k200);
  if (!baggage.empty()) add(kBaggage, baggage);
  opened_ = true;
  status_ = 200;
  nghttp2_data_provider dp{};
  dp.source.ptr = this;
  dp.read_callback = ReadData;
  int rv = nghttp2_submit_response(session->h2, sid, nva.data(), nva.size(), &dp);
  session->MarkDirty();
  if (rv != 0) {
    Abort(std::string("cannot answer the CONNECT: ") + nghttp2_strerror(rv));
    return;
  }
  // What the client sent before the answer waits in down_, not yet given
  // back to its windows: WritePod gives it back as the upstream takes it.
  SetMask(down_.empty() ? static_cast<uint32_t>(EPOLLIN) : static_cast<uint32_t>(EPOLLIN | EPOLLOUT));
  if (down_.empty() && peer_end_ && !pod_shut_) {
    shutdown(pod_.get(), SHUT_WR);
    pod_shut_ = true;
  }
}

void Stream::StartDial(Answer& a) {
  Dial& d = a.dial;
  dial_to_ = AddrText(d.to);
  std::string err;
  int fd = w_->MakeSocket(d.to.ss_family, d.netns.get(), d.mark, d.keepalive_time, d.keepalive_interval,
                          d.keepalive_retries, &err);
  if (fd < 0) {
    DialFailed(503, "connect to " + dial_to_ + " failed: " + err);
    return;
  }
  pod_ = Fd(fd);
  if (d.from_len != 0) {
    // From the client's own address (decide/inbound.ts), which is not ours.
    int one = 1;
    int level = d.from.ss_family == AF_INET ? SOL_IP : SOL_IPV6;
    int name = d.from.ss_family == AF_INET ? IP_TRANSPARENT : IPV6_TRANSPARENT;
    if (setsockopt(fd, level, name, &one, sizeof one) < 0 ||
        bind(fd, reinterpret_cast<const sockaddr*>(&d.from), d.from_len) < 0) {
      DialFailed(503, "connect to " + dial_to_ + " failed: " + Errno("bind to the client's address", errno));
      return;
    }
  }
  dial_header_ = std::move(d.header);
  dial_baggage_ = std::move(a.baggage);
  dialing_ = true;
  dial_deadline_ = NowMs() + w_->engine()->limits().connect_timeout_ms;
  if (connect(fd, reinterpret_cast<const sockaddr*>(&d.to), d.to_len) == 0) {
    OnDialed();
    return;
  }
  if (errno != EINPROGRESS) {
    DialFailed(503, "connect to " + dial_to_ + " failed: " + Errno("connect", errno));
    return;
  }
  SetMask(EPOLLOUT);
}

void Stream::OnDialed() {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(pod_.get(), SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
  if (err != 0) {
    DialFailed(503, "connect to " + dial_to_ + " failed: " + Errno("connect", err));
    return;
  }
  dialing_ = false;
  // The header goes first, before the 200 lets any payload through; a new
  // socket's empty send buffer takes it whole.
  if (!dial_header_.empty()) {
    ssize_t n = write(pod_.get(), dial_header_.data(), dial_header_.size());
    if (n != static_cast<ssize_t>(dial_header_.size())) {
      DialFailed(503, "connect to " + dial_to_ + " failed: " +
                          Errno("write of the PROXY header", n < 0 ? errno : EAGAIN));
      return;
    }
    std::string().swap(dial_header_);
  }
  Respond(dial_baggage_);
  std::string().swap(dial_baggage_);
  if (!done_) Emit(EventKind::kDial, 200, "-", "");
}

void Stream::DialFailed(int status, const std::string& why) {
  dialing_ = false;
  SetMask(0);
  pod_.reset();
  AnswerError(status);
  Emit(EventKind::kDial, status, "-", why);
  if (h2_closed_) w_->Bury(this);
}

void Stream::CheckDial(uint64_t now) {
  if (dialing_ && now >= dial_deadline_) {
    DialFailed(503, "connect to " + dial_to_ + " failed: connection timed out after " +
                        std::to_string(w_->engine()->limits().connect_timeout_ms) + " ms");
  }
}

void Stream::Revoke(const std::string& why) {
  if (dialing_) {
    DialFailed(401, why);
    return;
  }
  Abort(why);
}

void Stream::SetMask(uint32_t mask) {
  if (mask == mask_ && (registered_ || mask == 0)) return;
  mask_ = mask;
  w_->Watch(this, pod_.get(), mask, &registered_);
}

void Stream::OnResponse(bool end_stream) {
  if (opened_ || done_) return;
  if (status_ != 200) {
    // ztunnel's client: a non-200 answer fails the connection with flag
    // CONNECT; the stream is cancelled.
    done_ = true;
    if (session != nullptr) {
      nghttp2_submit_rst_stream(session->h2, NGHTTP2_FLAG_NONE, sid, NGHTTP2_CANCEL);
      session->MarkDirty();
    }
    Emit(EventKind::kFail, status_, "CONNECT", "answered HTTP " + std::to_string(status_));
    pod_.reset();
    return;
  }
  opened_ = true;
  Emit(EventKind::kOpen, 200, "-", "");
  SetMask(EPOLLIN);
  // What the pod sent while the CONNECT was in flight is already readable.
  ReadPod();
  if (done_) return;
  if (deferred_ && session != nullptr) {
    deferred_ = false;
    nghttp2_session_resume_data(session->h2, sid);
    session->MarkDirty();
  }
  if (end_stream) OnPeerEnd();
}

void Stream::OnData(const uint8_t* data, size_t len) {
  if (inbound_ && !opened_ && !done_) {
    // Before the answer: held, and not given back to the windows yet.
    down_.append(data, len);
    return;
  }
  if (done_ || !opened_) {
    nghttp2_session_consume(session->h2, sid, len);
    return;
  }
  // Gathered, and written once at the end of the session's read batch
  // (FlushPod): one writev(2) for the records of one batch, not one per
  // frame. While nothing older waits, only the place is kept: the bytes are
  // in the worker's read buffer until FlushPod, which copies what the pod
  // did not take. The windows are given back as the pod socket takes them.
  if (down_.empty() && iov_.size() < kMaxIov) {
    iov_.push_back({const_cast<uint8_t*>(data), len});
    iov_bytes_ += len;
  } else {
    KeepIov();
    down_.append(data, len);
  }
  if (!queued_) {
    queued_ = true;
    session->QueuePodWrite(this);
  }
}

void Stream::KeepIov() {
  for (const iovec& v : iov_) down_.append(static_cast<const uint8_t*>(v.iov_base), v.iov_len);
  iov_.clear();
  iov_bytes_ = 0;
}

void Stream::FlushPod() {
  queued_ = false;
  if (dead || done_ || !opened_) {
    iov_.clear();  // dropped (DropDown) with the stream's end
    iov_bytes_ = 0;
    return;
  }
  size_t i = 0;
  while (i < iov_.size()) {
    ssize_t n = writev(pod_.get(), iov_.data() + i, static_cast<int>(iov_.size() - i));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n < 0) {
      Abort(Errno("write to the pod", errno));
      return;
    }
    size_t k = static_cast<size_t>(n);
    recv_ += k;
    iov_bytes_ -= k;
    if (session != nullptr) {
      nghttp2_session_consume(session->h2, sid, k);
      session->MarkDirty();
    }
    while (k > 0 && i < iov_.size()) {
      size_t m = std::min(k, iov_[i].iov_len);
      iov_[i].iov_base = static_cast<uint8_t*>(iov_[i].iov_base) + m;
      iov_[i].iov_len -= m;
      k -= m;
      if (iov_[i].iov_len == 0) i++;
    }
  }
  // What the pod did not take is copied before the read buffer is reused.
  iov_.erase(iov_.begin(), iov_.begin() + static_cast<std::ptrdiff_t>(i));
  KeepIov();
  if (!down_.empty()) {
    SetMask(mask_ | EPOLLOUT);
    return;
  }
  WritePod();  // nothing left: the half-close and the end, if due
}

void Stream::OnPeerEnd() {
  if (done_) return;
  peer_end_ = true;
  if (down_.empty() && iov_.empty() && opened_ && !pod_shut_) {
    shutdown(pod_.get(), SHUT_WR);
    pod_shut_ = true;
  }
  MaybeFinish();
}

void Stream::OnClosed(uint32_t code) {
  // What still waits for the pod was never given back to the connection
  // window; the stream's own window no longer matters, the connection's
  // does (unreturned, it would shrink for every stream that ends this way
  // until the pooled connection stalls).
  size_t waiting = down_.size() + iov_bytes_;
  if (waiting > 0 && session != nullptr) nghttp2_session_consume_connection(session->h2, waiting);
  h2_closed_ = true;
  session = nullptr;
  if (done_) {
    w_->Bury(this);
    return;
  }
  if (!opened_) {
    done_ = true;
    dialing_ = false;
    SetMask(0);
    Emit(EventKind::kFail, 0, "CONNECT",
         inbound_ ? "the client closed the stream before the answer (code " + std::to_string(code) + ")"
                  : "stream closed before a response (code " + std::to_string(code) + ")");
    pod_.reset();
    w_->Bury(this);
    return;
  }
  if (code != NGHTTP2_NO_ERROR) {
    Abort("the peer reset the stream (code " + std::to_string(code) + ")");
    return;
  }
  // A clean close is both END_STREAMs, ours after the pod's EOF; a stream
  // closed short of that (RST_STREAM NO_ERROR) was cut off, as the
  // JavaScript relay judges a side that closes before both ways are through.
  if (!peer_end_ || !pod_eof_ || !up_.empty()) {
    Abort("the peer closed the stream early");
    return;
  }
  MaybeFinish();
}

ssize_t Stream::ReadForPeer(size_t len, uint32_t* flags) {
  // No byte of the pod's before the peer's 200, as the JavaScript client.
  if (!opened_ || done_) {
    deferred_ = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  // Only sized here: the bytes stay in up_ until SendToPeer writes them
  // (NO_COPY), which nghttp2 calls next for this frame, before any other
  // frame is read; up_ is dropped from nowhere else.
  size_t n = std::min(len, up_.size());
  if (n > 0) *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
  if (n == up_.size()) {
    if (pod_eof_) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
    } else if (n == 0) {
      deferred_ = true;
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  return static_cast<ssize_t>(n);
}

int Stream::SendToPeer(const uint8_t* framehd, size_t len) {
  if (session == nullptr || len > up_.size()) return NGHTTP2_ERR_CALLBACK_FAILURE;
  // The header goes in the bytes before the payload (up_'s lead; what is
  // there was sent already): header and payload are one SSL_write, so a
  // full frame is four full records and no payload byte is copied.
  uint8_t* frame = up_.lead_data();
  std::memcpy(frame, framehd, kFrameHeader);
  bool blocked = false;
  int rv = session->WriteFrame(frame, kFrameHeader + len, &blocked);
  if (rv != 0) return rv;
  up_.drop(len);
  sent_ += len;
  // Room again: read the pod (if it has not ended).
  if (!pod_eof_ && !done_ && (mask_ & EPOLLIN) == 0) SetMask(mask_ | EPOLLIN);
  // The socket is full: nghttp2 stops here, Flush resumes on EPOLLOUT.
  return blocked ? NGHTTP2_ERR_PAUSE : 0;
}

void Stream::ReadPod() {
  if (done_ || pod_eof_) return;
  if (sent_ >= kJumboAfter) up_.grow(kUpJumbo);
  bool got = false;
  while (up_.room() > 0) {
    size_t room = 0;
    uint8_t* p = up_.tail(&room);
    ssize_t n = read(pod_.get(), p, room);
    if (n > 0) {
      up_.commit(static_cast<size_t>(n));
      got = true;
      continue;
    }
    if (n == 0) {
      pod_eof_ = true;
      got = true;
      break;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) break;
    Abort(Errno("read from the pod", errno));
    return;
  }
  uint32_t want = mask_;
  if (pod_eof_ || up_.room() == 0) want &= ~static_cast<uint32_t>(EPOLLIN);
  SetMask(want);
  if (got && deferred_ && session != nullptr) {
    deferred_ = false;
    nghttp2_session_resume_data(session->h2, sid);
    session->MarkDirty();
  }
}

void Stream::WritePod() {
  while (!down_.empty()) {
    ssize_t n = write(pod_.get(), down_.data(), down_.size());
    if (n > 0) {
      down_.drop(static_cast<size_t>(n));
      recv_ += static_cast<size_t>(n);
      if (session != nullptr) {
        nghttp2_session_consume(session->h2, sid, static_cast<size_t>(n));
        session->MarkDirty();
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    Abort(Errno("write to the pod", errno));
    return;
  }
  SetMask(mask_ & ~static_cast<uint32_t>(EPOLLOUT));
  if (peer_end_ && !pod_shut_) {
    shutdown(pod_.get(), SHUT_WR);
    pod_shut_ = true;
  }
  MaybeFinish();
}

void Stream::OnEvents(uint32_t events) {
  if (dead || done_) return;
  if (dialing_) {
    OnDialed();
    return;
  }
  if (events & EPOLLERR) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(pod_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    Abort(Errno("the pod socket", err != 0 ? err : ECONNRESET));
    return;
  }
  if (events & EPOLLOUT) WritePod();
  if (done_) return;
  if (events & (EPOLLIN | EPOLLHUP)) ReadPod();
  if (done_) return;
  if ((events & EPOLLHUP) && (mask_ & EPOLLIN) == 0 && (mask_ & EPOLLOUT) == 0) {
    // Hung up with nothing left to wait for from it: out of epoll.
    SetMask(0);
  }
}

void Stream::MaybeFinish() {
  if (done_ || !opened_) return;
  // Both ways through: the HTTP/2 stream closed cleanly (our END_STREAM sent
  // after the pod's EOF, the peer's received) and the pod took everything.
  if (h2_closed_ && down_.empty() && iov_.empty()) {
    if (!pod_shut_) {
      shutdown(pod_.get(), SHUT_WR);
      pod_shut_ = true;
    }
    Finish("");
  }
}

void Stream::Abort(const std::string& why) {
  if (done_) return;
  if (session != nullptr && !h2_closed_) {
    nghttp2_submit_rst_stream(session->h2, NGHTTP2_FLAG_NONE, sid, NGHTTP2_CANCEL);
    DropDown();
    session->MarkDirty();
  }
  if (!opened_) {
    done_ = true;
    dialing_ = false;
    SetMask(0);
    pod_.reset();
    Emit(EventKind::kFail, 0, "CONNECT", why);
    if (h2_closed_) w_->Bury(this);
    return;
  }
  Finish(why);
}

void Stream::DropDown() {
  // Bytes for the pod that will never be written: returned to the windows.
  size_t waiting = down_.size() + iov_bytes_;
  if (waiting > 0 && session != nullptr && !h2_closed_) nghttp2_session_consume(session->h2, sid, waiting);
  down_.drop(down_.size());
  iov_.clear();
  iov_bytes_ = 0;
}

void Stream::Finish(const std::string& error) {
  DropDown();
  done_ = true;
  SetMask(0);
  // Ended before the pod's FIN: it may still be writing (class Linger).
  if (pod_eof_) pod_.reset();
  else w_->CloseLingering(std::move(pod_), pod_shut_);
  Counters& c = w_->engine()->counters();
  c.bytes_sent += sent_;
  c.bytes_recv += recv_;
  Emit(EventKind::kClose, status_, "-", error);
  // Still known to nghttp2 until its close callback: buried from there.
  if (h2_closed_) w_->Bury(this);
}

void Stream::SessionGone(const std::string& why) {
  h2_closed_ = true;
  session = nullptr;
  if (done_) {
    w_->Bury(this);
    return;
  }
  Abort(why);
}

// ---------------------------------------------------------------- Linger

Linger::Linger(Worker* w, Fd fd, uint64_t now) : w_(w), fd_(std::move(fd)), deadline_(now + kLingerMs) {
  w_->Watch(this, fd_.get(), EPOLLIN | EPOLLRDHUP, &registered_);
}

void Linger::OnEvents(uint32_t) {
  uint8_t* buf = w_->read_buf();
  for (;;) {
    ssize_t n = read(fd_.get(), buf, Worker::kReadBuf);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    break;  // the pod's FIN, or an error: nothing more to wait for
  }
  Done();
}

void Linger::Tick(uint64_t now) {
  if (now >= deadline_) Done();
}

void Linger::Done() {
  w_->Watch(this, fd_.get(), 0, &registered_);
  w_->Bury(this);  // the fd closes when it is deleted
}

void Linger::Unlink() { w_->lingers_.erase(this); }

void Worker::CloseLingering(Fd fd, bool shut) {
  if (fd.get() < 0) return;
  if (!shut && shutdown(fd.get(), SHUT_WR) < 0) return;  // not connected (any more): closes at once
  lingers_.insert(new Linger(this, std::move(fd), NowMs()));
}

// ---------------------------------------------------------------- Session

Session::Session(Worker* w, std::string k, const OutboundRequest& first)
    : key(std::move(k)), w_(w), cred_(first.cred), expected_(first.expected),
      upstream_(first.upstream), upstream_len_(first.upstream_len) {
  limit = w->engine()->limits().max_streams;
}

Session::Session(Worker* w, InboundRequest& req)
    : w_(w), state_(kHandshake), fd_(std::move(req.conn)), cred_(req.cred),
      server_(true), session_id_(req.session), trust_domain_(std::move(req.trust_domain)) {
  deadline_ = NowMs() + w->engine()->limits().connect_timeout_ms;
  sockaddr_storage peer{};
  socklen_t len = sizeof peer;
  if (getpeername(fd_.get(), reinterpret_cast<sockaddr*>(&peer), &len) == 0) {
    upstream_ = peer;
    upstream_len_ = len;
  }
}

std::string Session::StartServer() {
  ssl_ = SSL_new(cred_->server());
  if (ssl_ == nullptr || !AttachSocket(ssl_, fd_.get())) return OpensslError("SSL_new");
  SSL_set_accept_state(ssl_);
  SetMask(EPOLLIN);
  Handshake();
  return "";
}

void Session::OnRequestBegin(int32_t sid) {
  auto* st = new Stream(w_, this, session_id_, sid);
  w_->AddStream(st);
  nghttp2_session_set_stream_user_data(h2, sid, st);
  streams.emplace(sid, st);
  active++;
}

void Session::Goaway() {
  if (state_ == kClosed) return;
  if (state_ != kReady) {
    // Still in its handshake: nothing to finish.
    Close("-", "the server is closing");
    return;
  }
  if (goaway_sent_) return;
  goaway_sent_ = true;
  // Streams up to the last one taken finish; none after it start. With no
  // stream left nghttp2 wants neither read nor write: Finished() closes it.
  nghttp2_submit_goaway(h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h2),
                        NGHTTP2_NO_ERROR, nullptr, 0);
  MarkDirty();
}

Stream* Session::FindStream(int32_t sid) const {
  auto it = streams.find(sid);
  return it == streams.end() ? nullptr : it->second;
}

Session::~Session() {
  if (h2 != nullptr) nghttp2_session_del(h2);
  if (ssl_ != nullptr) SSL_free(ssl_);
}

std::string Session::Target() const { return AddrText(upstream_); }

std::string Session::Start(const OutboundRequest& first) {
  std::string err;
  int fd = w_->MakeUpstreamSocket(first, &err);
  if (fd < 0) return err;
  fd_ = Fd(fd);
  deadline_ = NowMs() + w_->engine()->limits().connect_timeout_ms;
  int rc = connect(fd, reinterpret_cast<const sockaddr*>(&upstream_), upstream_len_);
  if (rc < 0 && errno != EINPROGRESS)
    return "cannot connect to " + Target() + ": " + std::strerror(errno);
  SetMask(EPOLLOUT);
  return "";
}

void Session::SetMask(uint32_t mask) {
  if (mask == mask_ && mask != 0) return;
  bool registered = mask_ != 0;
  mask_ = mask;
  w_->Watch(this, fd_.get(), mask, &registered);
}

void Session::MarkDirty() {
  if (dirty || state_ == kClosed) return;
  dirty = true;
  w_->MarkDirty(this);
}

void Session::OnEvents(uint32_t events) {
  if (dead) return;
  switch (state_) {
    case kConnecting: {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        Close("CONNECT", "cannot connect to " + Target() + ": " + std::strerror(err));
        return;
      }
      if ((events & EPOLLOUT) == 0) return;
      ssl_ = SSL_new(cred_->client());
      if (ssl_ == nullptr || !AttachSocket(ssl_, fd_.get())) {
        Close("TLS_FAILURE", OpensslError("SSL_new"));
        return;
      }
      SSL_set_connect_state(ssl_);
      state_ = kHandshake;
      Handshake();
      return;
    }
    case kHandshake:
      Handshake();
      return;
    case kSettings:
    case kReady:
      if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ReadTls();
      if (state_ == kClosed) return;
      if (events & EPOLLOUT) Flush();
      return;
    case kClosed:
      return;
  }
}

void Session::Handshake() {
  ClearErrors();
  int rc = SSL_do_handshake(ssl_);
  if (rc == 1 && server_) {
    std::string peer;
    std::string why = CheckClient(ssl_, trust_domain_, &peer);
    if (why.empty()) why = Revoked();
    if (!why.empty()) {
      Close("TLS_FAILURE", why);
      return;
    }
    Event e{0, EventKind::kSession, 0, "-", 0, 0, ""};
    e.session = session_id_;
    e.fields.push_back(std::move(peer));
    w_->engine()->Emit(std::move(e));
    StartH2();
    return;
  }
  if (rc == 1) {
    std::string why = CheckServer(ssl_, expected_);
    if (why.empty()) why = Revoked();
    if (!why.empty()) {
      // Fail closed: not one byte of HTTP/2 to a server we did not expect.
      Close("TLS_FAILURE", why);
      return;
    }
    StartH2();
    return;
  }
  int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_READ) {
    SetMask(EPOLLIN);
  } else if (err == SSL_ERROR_WANT_WRITE) {
    SetMask(EPOLLOUT);
  } else {
    std::string why = OpensslError("TLS handshake");
    if (err == SSL_ERROR_SYSCALL && errno != 0) why += std::string(": ") + std::strerror(errno);
    Close("TLS_FAILURE", (server_ ? "TLS handshake from " : "TLS handshake with ") + Target() + " failed: " + why);
  }
}

std::string Session::Revoked() {
  std::shared_ptr<const CrlList> crls = w_->engine()->crls();
  if (crls == nullptr || ssl_ == nullptr) return "";
  std::string why = CheckRevocation(ssl_, *crls);
  if (why.empty()) return "";
  Counters& c = w_->engine()->counters();
  (server_ ? c.crl_rejections_destination : c.crl_rejections_source)++;
  return std::string(server_ ? "the client" : "the server") + " certificate is revoked: " + why;
}

void Session::RecheckRevocation() {
  // Before the handshake nothing is verified yet; it is checked when it completes.
  if (state_ == kConnecting || state_ == kHandshake || state_ == kClosed) return;
  std::string why = Revoked();
  // A security event, as ztunnel: closed at once, no GOAWAY grace.
  if (!why.empty()) Close("TLS_FAILURE", why);
}

void Session::StartH2() {
  int one = 1;
  setsockopt(fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  nghttp2_option* opt = Options(w_->engine()->limits().max_streams);
  int rc = server_ ? nghttp2_session_server_new2(&h2, Callbacks(), this, opt)
                   : nghttp2_session_client_new2(&h2, Callbacks(), this, opt);
  nghttp2_option_del(opt);
  if (rc != 0) {
    Close("H2_HANDSHAKE_FAILURE", "nghttp2 session setup failed");
    return;
  }
  if (server_) {
    // The JS server's settings (proxy/hbone/server.ts, h2.ts).
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, kServerMaxConcurrentStreams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kStreamWindow)},
        {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, kMaxFrame},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(kServerMaxHeaderList)},
    };
    nghttp2_submit_settings(h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
  } else {
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kStreamWindow)},
        {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, kMaxFrame},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, kMaxHeaderList},
    };
    nghttp2_submit_settings(h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
  }
  nghttp2_session_set_local_window_size(h2, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  // A server takes requests at once; a client waits for the peer's SETTINGS.
  state_ = server_ ? kReady : kSettings;
  idle_since_ = NowMs();
  last_ping_ = NowMs();
  SetMask(EPOLLIN);
  Flush();
}

void Session::ReadTls() {
  uint8_t* buf = w_->read_buf();
  for (;;) {
    // One SSL_read gives one record at most: fill the buffer with as many
    // as there are, then one mem_recv and one write per pod for the batch.
    size_t got = 0;
    int n = 0;
    while (got < Worker::kReadBuf) {
      ClearErrors();
      n = SSL_read(ssl_, buf + got, static_cast<int>(Worker::kReadBuf - got));
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    // SSL_get_error reads the error queue and errno: taken before mem_recv
    // and the pod writes can change either.
    int err = n > 0 ? SSL_ERROR_NONE : SSL_get_error(ssl_, n);
    int saved_errno = errno;
    unsigned long queued = err == SSL_ERROR_NONE ? 0 : ERR_peek_error();
    std::string why;
    if (err == SSL_ERROR_SSL || err == SSL_ERROR_SYSCALL) why = OpensslError("TLS read");
    if (got > 0) {
      ssize_t rv = nghttp2_session_mem_recv(h2, buf, got);
      if (rv < 0) {
        Close("-", std::string("HTTP/2 error from ") + Target() + ": " + nghttp2_strerror(static_cast<int>(rv)));
        return;
      }
      // The streams' bytes point into buf: written (or copied) before the
      // next batch reuses it.
      for (size_t i = 0; i < to_write_.size(); i++) to_write_[i]->FlushPod();
      to_write_.clear();
      if (state_ == kClosed) return;
    }
    if (err == SSL_ERROR_NONE) continue;  // the buffer filled: there may be more
    if (err == SSL_ERROR_WANT_READ) break;
    if (err == SSL_ERROR_WANT_WRITE) break;  // renegotiation is off; a key update
    if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && queued == 0 && saved_errno == 0)) {
      Close(state_ == kReady ? "-" : "H2_HANDSHAKE_FAILURE",
            Target() + " closed the connection" + (state_ == kReady ? "" : " before its SETTINGS (did it reject our certificate?)"));
      return;
    }
    if (err == SSL_ERROR_SYSCALL && saved_errno != 0) why += std::string(": ") + std::strerror(saved_errno);
    Close(state_ == kReady ? "-" : "H2_HANDSHAKE_FAILURE", why + " (" + Target() + ")");
    return;
  }
  if (became_ready_) {
    became_ready_ = false;
    w_->OnSessionReady(this);
  }
  if (goaway_ && usable && !server_) {
    usable = false;
    w_->Unpool(this);
  }
  MarkDirty();
}

int Session::OnFrameRecv(const nghttp2_frame* frame) {
  switch (frame->hd.type) {
    case NGHTTP2_SETTINGS:
      if ((frame->hd.flags & NGHTTP2_FLAG_ACK) == 0 && state_ == kSettings) {
        state_ = kReady;
        uint32_t peer = nghttp2_session_get_remote_settings(h2, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
        limit = std::max<uint32_t>(1, std::min(w_->engine()->limits().max_streams, peer));
        idle_since_ = NowMs();
        became_ready_ = true;
      }
      break;
    case NGHTTP2_HEADERS: {
      Stream* st = StreamOf(h2, frame->hd.stream_id);
      if (st == nullptr) break;
      bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
      if (frame->headers.cat == NGHTTP2_HCAT_RESPONSE) st->OnResponse(end);
      else if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) st->OnRequest(end);
      else if (end) st->OnPeerEnd();
      break;
    }
    case NGHTTP2_DATA:
      if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        Stream* st = StreamOf(h2, frame->hd.stream_id);
        if (st != nullptr) st->OnPeerEnd();
      }
      break;
    case NGHTTP2_PING:
      if (frame->hd.flags & NGHTTP2_FLAG_ACK) ping_sent_ = 0;
      break;
    case NGHTTP2_GOAWAY:
      goaway_ = true;
      break;
    default:
      break;
  }
  return 0;
}

void Session::OnStreamClose(int32_t sid, uint32_t code) {
  auto it = streams.find(sid);
  if (it == streams.end()) return;
  Stream* st = it->second;
  streams.erase(it);
  nghttp2_session_set_stream_user_data(h2, sid, nullptr);
  if (active > 0) active--;
  if (active == 0) idle_since_ = NowMs();
  st->OnClosed(code);
  // A freed stream slot may serve a waiting connection.
  if (usable && state_ == kReady && !server_) w_->Drain(key);
}

void Session::Open(OutboundRequest req) {
  auto* st = new Stream(w_, this, req);
  w_->AddStream(st);
  std::vector<nghttp2_nv> nva;
  nva.reserve(2 + req.headers.size());
  auto add = [&](const std::string& n, const std::string& v) {
    nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                   reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                   NGHTTP2_NV_FLAG_NONE});
  };
  static const std::string kMethod = ":method", kConnect = "CONNECT", kAuthority = ":authority";
  add(kMethod, kConnect);
  add(kAuthority, req.authority);
  for (const auto& [n, v] : req.headers) add(n, v);
  nghttp2_data_provider dp{};
  dp.source.ptr = st;
  dp.read_callback = ReadData;
  int32_t sid = nghttp2_submit_request(h2, nullptr, nva.data(), nva.size(), &dp, st);
  if (sid < 0) {
    st->sid = -1;
    st->SessionGone(std::string("cannot open a stream: ") + nghttp2_strerror(sid));
    return;
  }
  st->sid = sid;
  streams.emplace(sid, st);
  active++;
  if (++opened_ >= w_->engine()->limits().streams_per_connection) retiring_ = true;
  MarkDirty();
}

int Session::WriteTls(const uint8_t* p, size_t n, size_t* written) {
  *written = 0;
  while (*written < n) {
    ClearErrors();
    int w = SSL_write(ssl_, p + *written, static_cast<int>(n - *written));
    if (w > 0) {
      *written += static_cast<size_t>(w);
      records_ += (static_cast<uint64_t>(w) + kRecord - 1) / kRecord;
      continue;
    }
    int err = SSL_get_error(ssl_, w);
    if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
      SetMask(EPOLLIN | EPOLLOUT);
      return 0;
    }
    std::string why = OpensslError("TLS write");
    if (err == SSL_ERROR_SYSCALL && errno != 0) why += std::string(": ") + std::strerror(errno);
    Close("-", why + " (" + Target() + ")");
    return -1;
  }
  MaybeUpdateKeys();
  return 1;
}

void Session::MaybeUpdateKeys() {
  if (records_ < w_->engine()->limits().key_update_records) return;
  // Between writes only: OpenSSL takes no key update while a write waits.
  if (SSL_get_key_update_type(ssl_) != SSL_KEY_UPDATE_NONE) return;
  if (SSL_key_update(ssl_, SSL_KEY_UPDATE_NOT_REQUESTED) != 1) {
    ClearErrors();
    return;
  }
  records_ = 0;
  w_->engine()->counters().key_updates++;
}

bool Session::DrainOut() {
  size_t w = 0;
  int r = WriteTls(out_.data() + out_off_, out_.size() - out_off_, &w);
  out_off_ += w;
  if (r <= 0) return false;
  out_.clear();
  out_off_ = 0;
  return true;
}

int Session::WriteFrame(const uint8_t* frame, size_t n, bool* blocked) {
  if (state_ == kClosed) return NGHTTP2_ERR_CALLBACK_FAILURE;
  if (n < kDirectWrite) {
    // Flush calls mem_send only once out_ has no blocked bytes, so this
    // appends to gathered output; what waits stays under kOutGather + a frame.
    out_.insert(out_.end(), frame, frame + n);
    if (out_.size() >= kOutGather && !DrainOut()) {
      if (state_ == kClosed) return NGHTTP2_ERR_CALLBACK_FAILURE;
      *blocked = paused_ = true;
    }
    return 0;
  }
  // Control frames gathered before this one go first; if the socket will
  // not take them, nothing of this frame is taken (nghttp2 offers it again).
  if (out_off_ < out_.size() && !DrainOut()) {
    if (state_ == kClosed) return NGHTTP2_ERR_CALLBACK_FAILURE;
    paused_ = true;
    return NGHTTP2_ERR_WOULDBLOCK;
  }
  out_.clear();
  out_off_ = 0;
  size_t w = 0;
  int r = WriteTls(frame, n, &w);
  if (r < 0) return NGHTTP2_ERR_CALLBACK_FAILURE;
  if (r == 0) {
    // The frame counts as sent for nghttp2; its rest waits here (the same
    // bytes, as OpenSSL requires of a retried write), bounded by one frame.
    out_.assign(frame + w, frame + n);
    *blocked = paused_ = true;
  }
  return 0;
}

void Session::Flush() {
  dirty = false;
  if (state_ != kSettings && state_ != kReady) return;
  if (retiring_ && usable) {
    // Its streams run on (no GOAWAY yet: a server that got one before the
    // last stream's HEADERS would refuse it); new tunnels get a new
    // connection. Tick ends it once they are done.
    usable = false;
    w_->Unpool(this);
  }
  // What the socket did not take last time goes first.
  if (out_off_ < out_.size() && !DrainOut()) return;
  out_.clear();
  out_off_ = 0;
  // nghttp2 stops at a frame the socket did not take whole (paused_). When
  // the socket takes that rest right after, sending goes on here: nothing
  // else would resume it (EPOLLOUT is off once out_ is written, and a peer
  // with window to spare has nothing to say).
  do {
    paused_ = false;
    for (;;) {
      const uint8_t* data = nullptr;
      // DATA frames go out from WriteFrame inside this call (send_data);
      // what comes back here is the rest: HEADERS, WINDOW_UPDATE, PING, ...,
      // gathered to share records. 0 is also "paused" (the socket is full).
      ssize_t n = nghttp2_session_mem_send(h2, &data);
      if (state_ == kClosed) return;
      if (n < 0) {
        Close("-", std::string("HTTP/2 error: ") + nghttp2_strerror(static_cast<int>(n)));
        return;
      }
      if (n == 0) break;
      out_.insert(out_.end(), data, data + n);
      if (out_.size() >= kOutGather && !DrainOut()) return;
    }
    if (out_off_ < out_.size() && !DrainOut()) return;
    out_.clear();
    out_off_ = 0;
  } while (paused_);
  if (out_.capacity() > 4 * kOutGather) out_.shrink_to_fit();
  // What the write buffer holds goes out now, in one write(2).
  ClearErrors();
  if (BIO_flush(SSL_get_wbio(ssl_)) <= 0) {
    if (BIO_should_retry(SSL_get_wbio(ssl_))) {
      SetMask(EPOLLIN | EPOLLOUT);
      return;
    }
    Close("-", std::string("TLS write: ") + std::strerror(errno) + " (" + Target() + ")");
    return;
  }
  SetMask(EPOLLIN);
}

bool Session::Finished() const {
  return state_ == kReady && nghttp2_session_want_read(h2) == 0 &&
         nghttp2_session_want_write(h2) == 0 && out_off_ >= out_.size();
}

void Session::Tick(uint64_t now) {
  const Limits& l = w_->engine()->limits();
  if (state_ == kClosed) return;
  if (state_ != kReady && server_) {
    if (now >= deadline_) Close("TLS_FAILURE", "the TLS handshake from " + Target() + " timed out");
    return;
  }
  if (server_) {
    for (auto& [sid, st] : streams) st->CheckDial(now);
  }
  if (state_ != kReady) {
    if (now >= deadline_) {
      Close(state_ == kSettings ? "H2_HANDSHAKE_FAILURE" : "TLS_FAILURE",
            "HBONE connect to " + Target() + " timed out after " + std::to_string(l.connect_timeout_ms) +
                " ms (maybe a NetworkPolicy is blocking HBONE port " +
                std::to_string(ntohs(reinterpret_cast<const sockaddr_in*>(&upstream_)->sin_port)) + ")");
    }
    return;
  }
  if (!server_ && retiring_ && !usable && active == 0) {
    // Its streams are done: it ends as an idle one does.
    retiring_ = false;
    nghttp2_session_terminate_session(h2, NGHTTP2_NO_ERROR);
    MarkDirty();
    return;
  }
  if (!server_ && usable && active == 0 && now - idle_since_ >= l.idle_ms) {
    usable = false;
    w_->Unpool(this);
    nghttp2_session_terminate_session(h2, NGHTTP2_NO_ERROR);
    MarkDirty();
    return;
  }
  if (ping_sent_ != 0) {
    if (now - ping_sent_ >= l.ping_timeout_ms) {
      Close("-", "no PING answer within " + std::to_string(l.ping_timeout_ms) + " ms");
    }
    return;
  }
  if (now - last_ping_ >= l.ping_interval_ms) {
    if (nghttp2_submit_ping(h2, NGHTTP2_FLAG_NONE, nullptr) == 0) {
      ping_sent_ = now;
      last_ping_ = now;
      MarkDirty();
    }
  }
}

void Session::Close(const char* flag, const std::string& why) {
  if (state_ == kClosed) return;
  // Ready in nghttp2's eyes but not yet in the pool's (SETTINGS and the end
  // came in one read): for the pool it failed, and its waiters with it.
  bool was_ready = state_ == kReady && !became_ready_;
  state_ = kClosed;
  if (mask_ != 0) SetMask(0);
  if (server_) {
    w_->inbound_.erase(session_id_);
  } else if (!was_ready) {
    w_->OnSessionFailed(this, flag, why);
  } else if (usable) {
    usable = false;
    w_->Unpool(this);
  }
  // Streams gathered for a write end below; they write nothing more.
  for (Stream* st : to_write_) st->Unqueue();
  to_write_.clear();
  auto open = std::move(streams);
  streams.clear();
  for (auto& [sid, st] : open) {
    if (h2 != nullptr) nghttp2_session_set_stream_user_data(h2, sid, nullptr);
    st->SessionGone((server_ ? "HBONE connection from " : "HBONE connection to ") + Target() + " ended: " + why);
  }
  active = 0;
  if (server_) {
    // Inbound, after its streams' ends: a handshake that failed is a
    // rejection; an established session's end is news for the server's books.
    Event e{0, was_ready ? EventKind::kSessionEnd : EventKind::kReject, 0, flag, 0, 0, why};
    e.session = session_id_;
    w_->engine()->Emit(std::move(e));
  }
  w_->Bury(this);
}

// ---------------------------------------------------------------- Worker

Worker::Worker(Engine* e, unsigned index) : e_(e), read_buf_(new uint8_t[kReadBuf]) {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  int ev = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  self_netns_ = Fd(open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
  if (epfd_ < 0 || ev < 0 || self_netns_.get() < 0) {
    int err = errno;
    if (epfd_ >= 0) close(epfd_);
    if (ev >= 0) close(ev);
    throw std::runtime_error(Errno("hbone worker setup", err));
  }
  evfd_ = Fd(ev);
  epoll_event wake{};
  wake.events = EPOLLIN;
  wake.data.ptr = nullptr;
  epoll_ctl(epfd_, EPOLL_CTL_ADD, evfd_.get(), &wake);
  thread_ = std::thread([this, index] {
    // Named for top/perf: "skein-hbone-0", "skein-hbone-1", ...
    std::string name = "skein-hbone-" + std::to_string(index);
    pthread_setname_np(pthread_self(), name.c_str());
    Run();
  });
}

Worker::~Worker() {
  Stop();
  close(epfd_);
}

void Worker::Post(OutboundRequest req) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) {
      Fail(req, 0, "CONNECT", "the HBONE engine is closed");
      return;
    }
    inbox_.push_back(std::move(req));
    if (!TakeWake()) return;
  }
  Signal();
}

void Worker::PostInbound(InboundRequest req) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stop_) {
      inbound_inbox_.push_back(std::move(req));
      req.conn.reset();
      if (!TakeWake()) return;
    }
  }
  if (req.conn.get() >= 0) {
    Event e{0, EventKind::kReject, 0, "-", 0, 0, "the HBONE engine is closed"};
    e.session = req.session;
    req.conn.reset();
    e_->Emit(std::move(e));
    return;
  }
  Signal();
}

void Worker::PostAnswer(Answer a) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;  // the Fd closes with `a`
    answers_.push_back(std::move(a));
    if (!TakeWake()) return;
  }
  Signal();
}

void Worker::PostListen(ListenRequest r) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;  // the Fd closes with `r`
    listens_.push_back(std::move(r));
    if (!TakeWake()) return;
  }
  Signal();
}

void Worker::PostControl(Control c) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
    controls_.push_back(std::move(c));
    if (!TakeWake()) return;
  }
  Signal();
}

bool Worker::TakeWake() {
  // One wake-up per batch: the worker takes every inbox at once, and posts
  // made before it does need no write(2) (nor a context switch) of their own.
  bool wake = !woken_;
  woken_ = true;
  return wake;
}

void Worker::Signal() {
  uint64_t one = 1;
  (void)!write(evfd_.get(), &one, sizeof one);
}

void Worker::Apply(const Control& c) {
  if (c.kind == Control::kCloseOutbound) {
    CloseOutbound(c.id, c.reason);
    return;
  }
  if (c.kind == Control::kUnlisten) {
    auto a = acceptors_.find(c.session);
    if (a != acceptors_.end()) a->second->Close();
    return;
  }
  if (c.kind == Control::kRecheckCrls) {
    // Closing one may end others' streams, never free a session: they go to the graves.
    std::vector<Session*> all(sessions_.begin(), sessions_.end());
    for (Session* s : all) s->RecheckRevocation();
    return;
  }
  auto it = inbound_.find(c.session);
  // Gone meanwhile: its end is already reported.
  if (it == inbound_.end()) return;
  Session* s = it->second;
  if (c.kind == Control::kResetStream) {
    if (Stream* st = s->FindStream(c.stream)) st->Revoke(c.reason);
  } else if (c.kind == Control::kGoaway) {
    s->Goaway();
  } else {
    s->Close("-", c.reason);
  }
}

void Worker::CloseOutbound(uint32_t id, const std::string& why) {
  auto it = outbound_.find(id);
  if (it != outbound_.end()) {
    it->second->Abort(why);
    return;
  }
  if (CloseKtlsTunnel(this, id, why)) return;
  // Still waiting for its pooled connection.
  for (auto& [key, p] : pools_) {
    for (auto r = p.waiting.begin(); r != p.waiting.end(); ++r) {
      if (r->id != id) continue;
      Fail(*r, 0, "CONNECT", why);
      p.waiting.erase(r);
      return;
    }
  }
}

void Worker::Accept(InboundRequest req) {
  uint32_t id = req.session;
  auto* s = new Session(this, req);
  sessions_.insert(s);
  e_->counters().sessions_opened++;
  e_->counters().sessions_live++;
  inbound_[id] = s;
  std::string err = s->StartServer();
  if (!err.empty()) s->Close("TLS_FAILURE", err);
}

void Worker::Deliver(Answer a) {
  auto it = inbound_.find(a.session);
  Stream* st = it == inbound_.end() ? nullptr : it->second->FindStream(a.stream);
  // Gone meanwhile (its end already reported): the upstream is closed here.
  if (st == nullptr) return;
  st->OnAnswer(a);
}

void Worker::AskStop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  uint64_t one = 1;
  (void)!write(evfd_.get(), &one, sizeof one);
}

void Worker::Stop() {
  AskStop();
  if (thread_.joinable()) thread_.join();
}

void Worker::Watch(Handler* h, int fd, uint32_t mask, bool* registered) {
  epoll_event ev{};
  ev.events = mask;
  ev.data.ptr = h;
  if (mask == 0) {
    if (*registered) epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
    *registered = false;
  } else if (*registered) {
    epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev);
  } else {
    epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
    *registered = true;
  }
}

int Worker::MakeUpstreamSocket(const OutboundRequest& r, std::string* err) {
  return MakeSocket(r.upstream.ss_family, r.netns.get(), r.mark, r.keepalive_time, r.keepalive_interval,
                    r.keepalive_retries, err);
}

int Worker::MakeSocket(int family, int netns, uint32_t mark, uint32_t ka_time, uint32_t ka_interval,
                       uint32_t ka_retries, std::string* err) {
  // A socket belongs to the namespace current on the thread that creates it:
  // enter the pod's for the one socket(2) call (bpf/src/netns.h).
  bool moved = netns >= 0;
  if (moved && setns(netns, CLONE_NEWNET) < 0) {
    *err = Errno("setns into the pod network namespace", errno);
    return -1;
  }
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int saved = errno;
  if (moved && setns(self_netns_.get(), CLONE_NEWNET) < 0) {
    // A worker left in a pod's namespace would make every later socket
    // there: nothing sane can follow.
    std::abort();
  }
  if (fd < 0) {
    *err = Errno("socket", saved);
    return -1;
  }
  if (mark != 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) < 0) {
    *err = Errno("setsockopt SO_MARK", errno);
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (ka_time != 0) {
    // As the JavaScript path's upstream sockets (KEEPALIVE_* settings).
    int t = static_cast<int>(ka_time), i = static_cast<int>(ka_interval), n = static_cast<int>(ka_retries);
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &t, sizeof t) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &i, sizeof i) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &n, sizeof n) < 0) {
      *err = Errno("setsockopt keepalive", errno);
      close(fd);
      return -1;
    }
  }
  return fd;
}

void Worker::Fail(OutboundRequest& req, int status, const char* flag, const std::string& why) {
  req.pod.reset();
  e_->Emit({req.id, EventKind::kFail, status, flag, 0, 0, why});
}

void Worker::Dispatch(OutboundRequest req) {
  // The kernel module carries a tunnel on a connection of its own (ktls.h);
  // never under CRLs, whose re-checks reach only the sessions here.
  if (e_->limits().kmod && !req.no_kmod && e_->crls() == nullptr) {
    StartKtlsTunnel(this, std::move(req));
    return;
  }
  Pool& p = pools_[req.pool_key];
  for (Session* s : p.sessions) {
    if (s->CanTake()) {
      s->Open(std::move(req));
      return;
    }
  }
  std::string key = req.pool_key;
  p.waiting.push_back(std::move(req));
  if (p.opening == nullptr) StartSession(key);
}

void Worker::StartSession(const std::string& key) {
  Pool& p = pools_[key];
  auto* s = new Session(this, key, p.waiting.front());
  std::string err = s->Start(p.waiting.front());
  if (!err.empty()) {
    delete s;
    auto waiting = std::move(p.waiting);
    p.waiting.clear();
    if (p.sessions.empty()) pools_.erase(key);
    for (auto& r : waiting) Fail(r, 0, "CONNECT", err);
    return;
  }
  sessions_.insert(s);
  e_->counters().sessions_opened++;
  e_->counters().sessions_live++;
  p.opening = s;
}

void Worker::OnSessionReady(Session* s) {
  Pool& p = pools_[s->key];
  if (p.opening == s) p.opening = nullptr;
  p.sessions.push_back(s);
  Drain(s->key);
}

void Worker::Drain(const std::string& key) {
  auto it = pools_.find(key);
  if (it == pools_.end()) return;
  Pool& p = it->second;
  while (!p.waiting.empty()) {
    Session* free = nullptr;
    for (Session* s : p.sessions) {
      if (s->CanTake()) {
        free = s;
        break;
      }
    }
    if (free == nullptr) break;
    OutboundRequest r = std::move(p.waiting.front());
    p.waiting.pop_front();
    free->Open(std::move(r));
  }
  if (!p.waiting.empty() && p.opening == nullptr) StartSession(key);
}

void Worker::OnSessionFailed(Session* s, const char* flag, const std::string& why) {
  auto it = pools_.find(s->key);
  if (it == pools_.end()) return;
  Pool& p = it->second;
  if (p.opening != s) return;
  p.opening = nullptr;
  // As the JavaScript pool: the connections waiting for this session fail
  // with it.
  auto waiting = std::move(p.waiting);
  p.waiting.clear();
  if (p.sessions.empty()) pools_.erase(it);
  for (auto& r : waiting) Fail(r, 0, flag, why);
}

void Worker::Unpool(Session* s) {
  auto it = pools_.find(s->key);
  if (it == pools_.end()) return;
  Pool& p = it->second;
  p.sessions.erase(std::remove(p.sessions.begin(), p.sessions.end(), s), p.sessions.end());
  if (p.sessions.empty() && p.opening == nullptr && p.waiting.empty()) pools_.erase(it);
}

void Worker::Bury(Handler* h) {
  if (h->dead) return;
  h->dead = true;
  graves_.push_back(h);
}

void Worker::DeleteGraves() {
  // Deleted only here, after the pass: epoll may still hold events for them.
  for (Handler* h : graves_) {
    h->Unlink();
    delete h;
  }
  graves_.clear();
}

void Worker::AddStream(Stream* s) {
  streams_.insert(s);
  e_->counters().streams_live++;
}

void Session::Unlink() {
  w_->sessions_.erase(this);
  w_->engine()->counters().sessions_live--;
}

void Stream::Unlink() {
  if (auto it = w_->outbound_.find(id_); !inbound_ && it != w_->outbound_.end() && it->second == this) w_->outbound_.erase(it);
  w_->streams_.erase(this);
  w_->engine()->counters().streams_live--;
}

bool Worker::Poll(std::vector<epoll_event>* events, int timeout_ms) {
  int n = epoll_wait(epfd_, events->data(), static_cast<int>(events->size()), timeout_ms);
  if (n < 0) return errno == EINTR;
  for (int i = 0; i < n; i++) {
    auto* h = static_cast<Handler*>((*events)[i].data.ptr);
    if (h == nullptr) {
      uint64_t v;
      (void)!read(evfd_.get(), &v, sizeof v);  // the wake-up eventfd
    } else if (!h->dead) {
      h->OnEvents((*events)[i].events);
    }
  }
  return true;
}

void Worker::Run() {
  std::vector<epoll_event> events(256);
  std::vector<OutboundRequest> batch;
  std::vector<InboundRequest> accepts;
  std::vector<Answer> answers;
  std::vector<Control> controls;
  std::vector<ListenRequest> listens;
  uint64_t next_tick = NowMs() + 500;
  for (;;) {
    if (!Poll(&events, 500)) break;
    bool stopping;
    {
      std::lock_guard<std::mutex> lock(mu_);
      batch.swap(inbox_);
      accepts.swap(inbound_inbox_);
      answers.swap(answers_);
      controls.swap(controls_);
      listens.swap(listens_);
      woken_ = false;
      stopping = stop_;
    }
    for (auto& r : batch) Dispatch(std::move(r));
    batch.clear();
    for (auto& r : accepts) Accept(std::move(r));
    accepts.clear();
    for (auto& a : answers) Deliver(std::move(a));
    answers.clear();
    // Listeners before controls: an unlisten posted right after its listen
    // comes in the same batch and must find the acceptor.
    for (auto& r : listens) {
      // A listener id reused before its old acceptor went: the new one wins.
      if (auto old = acceptors_.find(r.listener); old != acceptors_.end()) old->second->Close();
      acceptors_[r.listener] = new Acceptor(this, r);
    }
    listens.clear();
    for (auto& c : controls) Apply(c);
    controls.clear();
    uint64_t now = NowMs();
    if (now >= next_tick) {
      next_tick = now + 500;
      std::vector<Session*> all(sessions_.begin(), sessions_.end());
      for (Session* s : all) if (!s->dead) s->Tick(now);
      for (Linger* l : lingers_) if (!l->dead) l->Tick(now);
      for (auto& [id, a] : acceptors_) if (!a->dead) a->Tick();
    }
    // One TLS write per session per pass, whatever its streams did.
    for (size_t i = 0; i < dirty_.size(); i++) {
      Session* s = dirty_[i];
      if (!s->dead && s->dirty) s->Flush();
    }
    dirty_.clear();
    for (Session* s : sessions_) {
      if (!s->dead && s->Finished()) s->Close("-", "the session ended");
    }
    DeleteGraves();
    if (stopping) break;
  }
  Shutdown();
}

void Worker::Shutdown() {
  for (auto& [id, a] : acceptors_) a->Close();
  CloseKtlsTunnels(this);
  std::vector<Session*> all(sessions_.begin(), sessions_.end());
  for (Session* s : all) if (!s->dead) s->Close("-", "the HBONE engine is closed");
  for (auto& [key, p] : pools_) {
    for (auto& r : p.waiting) Fail(r, 0, "CONNECT", "the HBONE engine is closed");
  }
  pools_.clear();
  std::vector<Stream*> rest(streams_.begin(), streams_.end());
  for (Stream* st : rest) if (!st->dead) st->SessionGone("the HBONE engine is closed");
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& r : inbox_) Fail(r, 0, "CONNECT", "the HBONE engine is closed");
    inbox_.clear();
    for (auto& r : inbound_inbox_) {
      Event e{0, EventKind::kReject, 0, "-", 0, 0, "the HBONE engine is closed"};
      e.session = r.session;
      e_->Emit(std::move(e));
    }
    inbound_inbox_.clear();
    answers_.clear();
    controls_.clear();
    listens_.clear();
  }
  DeleteGraves();
  AwaitLingers(kStopLingerMs);
}

void Worker::AwaitLingers(uint64_t ms) {
  std::vector<epoll_event> events(64);
  for (uint64_t until = NowMs() + ms, now = NowMs(); !lingers_.empty() && now < until; now = NowMs()) {
    if (!Poll(&events, static_cast<int>(until - now))) break;
    DeleteGraves();
  }
  // The rest close as they are.
  for (Linger* l : std::vector<Linger*>(lingers_.begin(), lingers_.end())) Bury(l);
  DeleteGraves();
}

}  // namespace skein::hbone
