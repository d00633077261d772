// SPDX-License-Identifier: Apache-2.0
// Outbound tunnels carried by the kernel module over kTLS: see ktls.h.
#include "ktls.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/tls.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "../../../kmod/skein_hbone.h"
#include "worker.h"

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

namespace skein::hbone {

namespace {

// The windows and limits we advertise, as a pooled session's (worker.cc,
// from ztunnel's src/proxy/h2.rs), except the frame size: the module reads
// frames of at most 16384 bytes, so we leave SETTINGS_MAX_FRAME_SIZE at its
// default.
constexpr uint32_t kStreamWindow = 4 * 1024 * 1024;
constexpr uint32_t kConnectionWindow = 16 * 1024 * 1024;
constexpr uint32_t kMaxHeaderList = 16 * 1024;
constexpr uint32_t kFrameMax = 16384;
constexpr int kPipeSize = 256 * 1024;
constexpr uint8_t kRecordData = 23, kRecordHandshake = 22, kRecordAlert = 21;

uint64_t NowMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

std::string Errno(const char* what, int err) { return std::string(what) + ": " + std::strerror(err); }

uint32_t Be32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3];
}

void PutFrameHeader(uint8_t* b, uint32_t len, uint8_t type, uint8_t flags, uint32_t sid) {
  b[0] = len >> 16; b[1] = len >> 8; b[2] = len;
  b[3] = type; b[4] = flags;
  b[5] = sid >> 24; b[6] = sid >> 16; b[7] = sid >> 8; b[8] = sid;
}

// The traffic secrets of one handshake, from OpenSSL's key log.
struct Secrets {
  uint8_t client[48], server[48];
  size_t client_len = 0, server_len = 0;
};

int SecretsIndex() {
  static const int idx = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return idx;
}

bool Unhex(const char* s, size_t hexlen, uint8_t* out) {
  for (size_t i = 0; i < hexlen / 2; i++) {
    int v = 0;
    for (int k = 0; k < 2; k++) {
      char c = s[2 * i + k];
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (d < 0) return false;
      v = v * 16 + d;
    }
    out[i] = static_cast<uint8_t>(v);
  }
  return true;
}

// HKDF-Expand-Label(secret, label, "", len), RFC 8446 section 7.1; len is at
// most one hash block here (a key or an IV).
bool ExpandLabel(const EVP_MD* md, const uint8_t* secret, size_t secret_len, const char* label, uint8_t* out,
                 unsigned len) {
  uint8_t info[64], t[EVP_MAX_MD_SIZE];
  unsigned n = 0, tlen = 0;
  size_t l = std::strlen(label);
  info[n++] = 0;
  info[n++] = static_cast<uint8_t>(len);
  info[n++] = static_cast<uint8_t>(6 + l);
  std::memcpy(info + n, "tls13 ", 6);
  n += 6;
  std::memcpy(info + n, label, l);
  n += static_cast<unsigned>(l);
  info[n++] = 0;  // empty context
  info[n++] = 1;  // T(1) = HMAC(secret, info || 0x01)
  if (HMAC(md, secret, static_cast<int>(secret_len), info, n, t, &tlen) == nullptr || tlen < len) return false;
  std::memcpy(out, t, len);
  return true;
}

// Keys one direction of kTLS from a traffic secret; record sequence 0.
std::string SetKtls(int fd, int dir, uint32_t cipher_id, const uint8_t* secret, size_t secret_len) {
  uint8_t iv[12];
  if (cipher_id == TLS1_3_CK_AES_128_GCM_SHA256) {
    tls12_crypto_info_aes_gcm_128 ci{};
    uint8_t key[16];
    if (secret_len != 32 || !ExpandLabel(EVP_sha256(), secret, secret_len, "key", key, 16) ||
        !ExpandLabel(EVP_sha256(), secret, secret_len, "iv", iv, 12))
      return "deriving the AES-128-GCM traffic keys failed";
    ci.info.version = TLS_1_3_VERSION;
    ci.info.cipher_type = TLS_CIPHER_AES_GCM_128;
    std::memcpy(ci.key, key, sizeof key);
    std::memcpy(ci.salt, iv, 4);
    std::memcpy(ci.iv, iv + 4, 8);
    int rc = setsockopt(fd, SOL_TLS, dir, &ci, sizeof ci);
    OPENSSL_cleanse(&ci, sizeof ci);
    OPENSSL_cleanse(key, sizeof key);
    return rc == 0 ? "" : Errno(dir == TLS_TX ? "SOL_TLS TLS_TX" : "SOL_TLS TLS_RX", errno);
  }
  if (cipher_id == TLS1_3_CK_AES_256_GCM_SHA384) {
    tls12_crypto_info_aes_gcm_256 ci{};
    uint8_t key[32];
    if (secret_len != 48 || !ExpandLabel(EVP_sha384(), secret, secret_len, "key", key, 32) ||
        !ExpandLabel(EVP_sha384(), secret, secret_len, "iv", iv, 12))
      return "deriving the AES-256-GCM traffic keys failed";
    ci.info.version = TLS_1_3_VERSION;
    ci.info.cipher_type = TLS_CIPHER_AES_GCM_256;
    std::memcpy(ci.key, key, sizeof key);
    std::memcpy(ci.salt, iv, 4);
    std::memcpy(ci.iv, iv + 4, 8);
    int rc = setsockopt(fd, SOL_TLS, dir, &ci, sizeof ci);
    OPENSSL_cleanse(&ci, sizeof ci);
    OPENSSL_cleanse(key, sizeof key);
    return rc == 0 ? "" : Errno(dir == TLS_TX ? "SOL_TLS TLS_TX" : "SOL_TLS TLS_RX", errno);
  }
  return "a cipher suite kTLS is not keyed for here";
}

// One read of application data from the kTLS socket; the record type of
// what was read in *type (a record that is not data is read only with a
// control buffer, else kTLS refuses it).
ssize_t RecvRecord(int fd, uint8_t* p, size_t n, uint8_t* type) {
  char cbuf[CMSG_SPACE(sizeof(unsigned char))];
  iovec iov{p, n};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = cbuf;
  m.msg_controllen = sizeof cbuf;
  ssize_t r;
  do {
    r = recvmsg(fd, &m, MSG_DONTWAIT);
  } while (r < 0 && errno == EINTR);
  *type = kRecordData;
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); r > 0 && c != nullptr; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level == SOL_TLS && c->cmsg_type == TLS_GET_RECORD_TYPE) *type = *CMSG_DATA(c);
  }
  return r;
}

class KtlsTunnel;

// The tunnels of this worker thread by id: for closeOutbound and the engine's stop.
thread_local std::unordered_map<uint32_t, KtlsTunnel*> tunnels;

// A second fd of one tunnel in the worker's epoll.
class Side : public Handler {
 public:
  Side(KtlsTunnel* t, int which) : t_(t), which_(which) {}
  void OnEvents(uint32_t events) override;
  void Unlink() override {}

 private:
  KtlsTunnel* t_;
  int which_;
};

enum { kPodSide = 1, kTimerSide = 2 };

class KtlsTunnel : public Handler {
 public:
  KtlsTunnel(Worker* w, OutboundRequest req)
      : w_(w), req_(std::move(req)), id_(req_.id), pod_side_(this, kPodSide), timer_side_(this, kTimerSide) {
    tunnels[id_] = this;
  }
  ~KtlsTunnel() override {
    if (h2_ != nullptr) nghttp2_session_del(h2_);
    if (ssl_ != nullptr) SSL_free(ssl_);
  }

  // false: given back to the pooled path (req_ moved there).
  void Start();
  void OnEvents(uint32_t events) override;
  void OnSide(int which, uint32_t events);
  void Unlink() override {
    if (auto it = tunnels.find(id_); it != tunnels.end() && it->second == this) tunnels.erase(it);
  }
  void EngineClosed() { Close("the HBONE engine is closed"); }
  void Close(const std::string& why);

  // nghttp2 callbacks, until the hand-over.
  void OnStatus(int s) { status_ = s; }
  void OnFrame(const nghttp2_frame* f);
  void OnStreamClose(int32_t sid, uint32_t code);
  void OnEarlyData(const uint8_t* p, size_t n) {
    held_.append(reinterpret_cast<const char*>(p), n);
    nghttp2_session_consume(h2_, sid_, n);
  }

 private:
  enum State { kConnecting, kHandshake, kH2, kCarrying, kDetached, kDone };

  void Decline(const std::string& why);
  void Fail(const char* flag, int status, const std::string& why);
  void Abort(const std::string& why);
  void Finish(const std::string& error);
  void Rearm();
  void Watch(Handler* h, int fd, uint32_t mask, uint32_t* cur, bool* reg);
  void ArmTimer(long ns);
  void Handshake();
  void StartH2();
  bool FlushH2();
  void ReadH2();
  int ReadFrame();
  void HandOver();
  void PumpUp();
  void PumpDown();
  void Detach(bool fallback);
  int HandleRawFrame();
  bool Restream();
  bool WriteRaw(const uint8_t* p, size_t n);
  void Relay();
  std::string Target() const;

  Worker* w_;
  OutboundRequest req_;
  uint32_t id_;  // req_.id, kept: Decline moves req_ to the pooled path
  Side pod_side_, timer_side_;
  State state_ = kConnecting;
  Fd fd_, timer_;
  int up_[2] = {-1, -1}, down_[2] = {-1, -1};
  uint32_t fd_mask_ = 0, pod_mask_ = 0, timer_mask_ = 0;
  bool fd_reg_ = false, pod_reg_ = false, timer_reg_ = false;
  SSL* ssl_ = nullptr;
  Secrets secrets_;
  uint64_t deadline_ = 0;
  // HTTP/2 until the hand-over.
  nghttp2_session* h2_ = nullptr;
  int32_t sid_ = -1;
  int status_ = 0;
  bool got_response_ = false, response_end_ = false, settings_acked_ = false;
  std::string h2_error_;
  std::vector<uint8_t> out_;
  size_t out_off_ = 0;
  // One frame being read (header, then payload).
  std::vector<uint8_t> frame_;
  size_t frame_got_ = 0;
  // The stream, as the module holds it.
  skein_hbone_stream stream_{};
  uint32_t peer_initial_window_ = 65535;
  // The relay.
  size_t up_in_pipe_ = 0, down_in_pipe_ = 0;
  std::string held_;  // DATA payload read in userspace while detached, not yet in the pipe
  bool pod_eof_ = false, up_shut_ = false, peer_eof_ = false, pod_shut_ = false;
  bool window_blocked_ = false;
  bool tunnel_edge_ = false;  // the tunnel was readable since the last look
  uint64_t sent_ = 0, recv_ = 0;
};

void Side::OnEvents(uint32_t events) { t_->OnSide(which_, events); }

// --- nghttp2 callbacks (the CONNECT exchange only) -------------------------

KtlsTunnel* TunnelOf(void* user) { return static_cast<KtlsTunnel*>(user); }

int CbHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen, const uint8_t* value,
             size_t valuelen, uint8_t, void* user) {
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_RESPONSE) return 0;
  if (namelen == 7 && std::memcmp(name, ":status", 7) == 0 && valuelen == 3) {
    int s = 0;
    for (size_t i = 0; i < 3; i++) {
      if (value[i] < '0' || value[i] > '9') return 0;
      s = s * 10 + (value[i] - '0');
    }
    TunnelOf(user)->OnStatus(s);
  }
  return 0;
}

int CbFrame(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  TunnelOf(user)->OnFrame(frame);
  return 0;
}

int CbStreamClose(nghttp2_session*, int32_t sid, uint32_t code, void* user) {
  TunnelOf(user)->OnStreamClose(sid, code);
  return 0;
}

int CbData(nghttp2_session*, uint8_t, int32_t sid, const uint8_t* data, size_t len, void* user) {
  // DATA after the answer but before the SETTINGS acknowledgement (a peer
  // that speaks first): kept, it goes to the pod before anything spliced.
  (void)sid;
  TunnelOf(user)->OnEarlyData(data, len);
  return 0;
}

ssize_t CbNoData(nghttp2_session*, int32_t, uint8_t*, size_t, uint32_t*, nghttp2_data_source*, void*) {
  // The stream's bytes go through the module, never through nghttp2.
  return NGHTTP2_ERR_DEFERRED;
}

nghttp2_session_callbacks* Callbacks() {
  static nghttp2_session_callbacks* cbs = [] {
    nghttp2_session_callbacks* c = nullptr;
    if (nghttp2_session_callbacks_new(&c) != 0) std::abort();
    nghttp2_session_callbacks_set_on_header_callback(c, CbHeader);
    nghttp2_session_callbacks_set_on_frame_recv_callback(c, CbFrame);
    nghttp2_session_callbacks_set_on_stream_close_callback(c, CbStreamClose);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(c, CbData);
    return c;
  }();
  return cbs;
}

// --- set-up -----------------------------------------------------------------

std::string KtlsTunnel::Target() const {
  char text[64] = {0};
  const auto* sin = reinterpret_cast<const sockaddr_in*>(&req_.upstream);
  if (req_.upstream.ss_family == AF_INET) {
    inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(ntohs(sin->sin_port));
  }
  const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&req_.upstream);
  inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text);
  std::string out(1, '[');  // not "[" + ...: gcc 12's -Wrestrict misfires on it
  out.append(text);
  out.append("]:");
  out.append(std::to_string(ntohs(sin6->sin6_port)));
  return out;
}

void KtlsTunnel::Watch(Handler* h, int fd, uint32_t mask, uint32_t* cur, bool* reg) {
  if (mask == *cur && (*reg || mask == 0)) return;
  *cur = mask;
  w_->Watch(h, fd, mask, reg);
}

void KtlsTunnel::ArmTimer(long ns) {
  itimerspec its{};
  its.it_value.tv_sec = ns / 1000000000L;
  its.it_value.tv_nsec = ns % 1000000000L;
  timerfd_settime(timer_.get(), 0, &its, nullptr);
  Watch(&timer_side_, timer_.get(), EPOLLIN, &timer_mask_, &timer_reg_);
}

void KtlsTunnel::Start() {
  // What Node read from the pod goes into the pipe first; a lot of it (not
  // seen in practice) is left to the pooled path.
  if (req_.initial.size() > 64 * 1024) {
    Decline("more than 64 KiB read before the hand-over");
    return;
  }
  int t = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (t < 0) {
    Decline(Errno("timerfd_create", errno));
    return;
  }
  timer_ = Fd(t);
  std::string err;
  int fd = w_->MakeUpstreamSocket(req_, &err);
  if (fd < 0) {
    Fail("CONNECT", 0, err);
    return;
  }
  fd_ = Fd(fd);
  deadline_ = NowMs() + w_->engine()->limits().connect_timeout_ms;
  ArmTimer(static_cast<long>(w_->engine()->limits().connect_timeout_ms) * 1000000L);
  int rc = connect(fd, reinterpret_cast<const sockaddr*>(&req_.upstream), req_.upstream_len);
  if (rc < 0 && errno != EINPROGRESS) {
    Fail("CONNECT", 0, "cannot connect to " + Target() + ": " + std::strerror(errno));
    return;
  }
  Watch(this, fd_.get(), EPOLLOUT, &fd_mask_, &fd_reg_);
}

void KtlsTunnel::OnEvents(uint32_t events) {
  if (dead) return;
  switch (state_) {
    case kConnecting: {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        Fail("CONNECT", 0, "cannot connect to " + Target() + ": " + std::strerror(err));
        return;
      }
      if ((events & EPOLLOUT) == 0) return;
      // The module takes the connected socket before any byte of TLS.
      if (setsockopt(fd_.get(), IPPROTO_TCP, TCP_ULP, SKEIN_HBONE_ULP_NAME, sizeof SKEIN_HBONE_ULP_NAME - 1) != 0) {
        Decline(Errno("TCP_ULP " SKEIN_HBONE_ULP_NAME, errno));
        return;
      }
      ssl_ = SSL_new(req_.cred->client());
      if (ssl_ == nullptr || SSL_set_fd(ssl_, fd_.get()) != 1) {
        Fail("TLS_FAILURE", 0, OpensslError("SSL_new"));
        return;
      }
      // Record by record: nothing past the handshake may sit in OpenSSL's
      // buffer when kTLS takes over.
      SSL_set_read_ahead(ssl_, 0);
      SSL_set_ex_data(ssl_, SecretsIndex(), &secrets_);
      SSL_set_connect_state(ssl_);
      state_ = kHandshake;
      Handshake();
      return;
    }
    case kHandshake:
      Handshake();
      return;
    case kH2:
      if (events & EPOLLOUT) {
        if (!FlushH2()) return;
      }
      if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ReadH2();
      return;
    case kCarrying:
    case kDetached:
      if (events & EPOLLERR) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
        Abort(Errno("the HBONE connection", err != 0 ? err : ECONNRESET));
        return;
      }
      window_blocked_ = false;
      if (events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) tunnel_edge_ = true;
      Relay();
      return;
    case kDone:
      return;
  }
}

void KtlsTunnel::OnSide(int which, uint32_t events) {
  if (dead || state_ == kDone) return;
  if (which == kTimerSide) {
    uint64_t v;
    (void)!read(timer_.get(), &v, sizeof v);
    if (state_ < kCarrying) {
      if (NowMs() >= deadline_) {
        Fail(state_ == kH2 ? "H2_HANDSHAKE_FAILURE" : "TLS_FAILURE", 0,
             "HBONE connect to " + Target() + " timed out after " +
                 std::to_string(w_->engine()->limits().connect_timeout_ms) + " ms");
      }
      return;
    }
    window_blocked_ = false;
    Relay();
    return;
  }
  if (events & EPOLLERR) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(req_.pod.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    Abort(Errno("the pod socket", err != 0 ? err : ECONNRESET));
    return;
  }
  Relay();
}

void KtlsTunnel::Handshake() {
  ERR_clear_error();
  int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    std::string why = CheckServer(ssl_, req_.expected);
    if (!why.empty()) {
      // Fail closed: not one byte of HTTP/2 to a server we did not expect.
      Fail("TLS_FAILURE", 0, why);
      return;
    }
    StartH2();
    return;
  }
  int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_READ) {
    Watch(this, fd_.get(), EPOLLIN, &fd_mask_, &fd_reg_);
  } else if (err == SSL_ERROR_WANT_WRITE) {
    Watch(this, fd_.get(), EPOLLOUT, &fd_mask_, &fd_reg_);
  } else {
    std::string why = OpensslError("TLS handshake");
    if (err == SSL_ERROR_SYSCALL && errno != 0) why += std::string(": ") + std::strerror(errno);
    Fail("TLS_FAILURE", 0, "TLS handshake with " + Target() + " failed: " + why);
  }
}

void KtlsTunnel::StartH2() {
  // kTLS below the module, keyed from the handshake's traffic secrets.
  if (SSL_has_pending(ssl_) || SSL_pending(ssl_) > 0) {
    Fail("TLS_FAILURE", 0, "TLS data arrived with the handshake; cannot hand the connection to kTLS");
    return;
  }
  const SSL_CIPHER* c = SSL_get_current_cipher(ssl_);
  uint32_t cipher = c == nullptr ? 0 : SSL_CIPHER_get_id(c);
  if (secrets_.client_len == 0 || secrets_.server_len == 0) {
    Fail("TLS_FAILURE", 0, "no traffic secrets from the TLS handshake");
    return;
  }
  if (setsockopt(fd_.get(), IPPROTO_TCP, TCP_ULP, "tls", 3) != 0) {
    Fail("TLS_FAILURE", 0, Errno("TCP_ULP tls", errno));
    return;
  }
  std::string err = SetKtls(fd_.get(), TLS_TX, cipher, secrets_.client, secrets_.client_len);
  if (err.empty()) err = SetKtls(fd_.get(), TLS_RX, cipher, secrets_.server, secrets_.server_len);
  OPENSSL_cleanse(&secrets_, sizeof secrets_);
  if (!err.empty()) {
    Fail("TLS_FAILURE", 0, "kTLS: " + err);
    return;
  }
  // From here OpenSSL has no part: the records are the kernel's.
  SSL_set_ex_data(ssl_, SecretsIndex(), nullptr);
  SSL_free(ssl_);
  ssl_ = nullptr;
  int one = 1;
  setsockopt(fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0) std::abort();
  nghttp2_option_set_no_auto_window_update(opt, 1);
  int rc = nghttp2_session_client_new2(&h2_, Callbacks(), this, opt);
  nghttp2_option_del(opt);
  if (rc != 0) {
    Fail("H2_HANDSHAKE_FAILURE", 0, "nghttp2 session setup failed");
    return;
  }
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, kMaxHeaderList},
  };
  nghttp2_submit_settings(h2_, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
  nghttp2_session_set_local_window_size(h2_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  std::vector<nghttp2_nv> nva;
  auto add = [&](const std::string& n, const std::string& v) {
    nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                   reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(), NGHTTP2_NV_FLAG_NONE});
  };
  static const std::string kMethod = ":method", kConnect = "CONNECT", kAuthority = ":authority";
  add(kMethod, kConnect);
  add(kAuthority, req_.authority);
  for (const auto& [n, v] : req_.headers) add(n, v);
  nghttp2_data_provider dp{};
  dp.source.ptr = this;
  dp.read_callback = CbNoData;
  sid_ = nghttp2_submit_request(h2_, nullptr, nva.data(), nva.size(), &dp, this);
  if (sid_ < 0) {
    Fail("CONNECT", 0, std::string("cannot open a stream: ") + nghttp2_strerror(sid_));
    return;
  }
  state_ = kH2;
  frame_.assign(9, 0);
  frame_got_ = 0;
  Watch(this, fd_.get(), EPOLLIN, &fd_mask_, &fd_reg_);
  if (FlushH2()) ReadH2();
}

// Writes nghttp2's output through kTLS; false when the tunnel ended.
bool KtlsTunnel::FlushH2() {
  for (;;) {
    while (out_off_ < out_.size()) {
      ssize_t n = write(fd_.get(), out_.data() + out_off_, out_.size() - out_off_);
      if (n > 0) {
        out_off_ += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        Watch(this, fd_.get(), EPOLLIN | EPOLLOUT, &fd_mask_, &fd_reg_);
        return true;
      }
      Fail("H2_HANDSHAKE_FAILURE", 0, Errno("write to the HBONE connection", errno) + " (" + Target() + ")");
      return false;
    }
    out_.clear();
    out_off_ = 0;
    const uint8_t* data = nullptr;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(h2_, &data)) > 0) out_.insert(out_.end(), data, data + n);
    if (n < 0) {
      Fail("H2_HANDSHAKE_FAILURE", 0, std::string("HTTP/2 error: ") + nghttp2_strerror(static_cast<int>(n)));
      return false;
    }
    if (out_.empty()) break;
  }
  Watch(this, fd_.get(), EPOLLIN, &fd_mask_, &fd_reg_);
  if (got_response_ && settings_acked_ && status_ == 200 && !response_end_) HandOver();
  return state_ != kDone;
}

// Reads one frame: 1 when frame_ holds it whole, 0 for more later, -1 when
// the tunnel ended (Fail/Abort done).
int KtlsTunnel::ReadFrame() {
  for (;;) {
    size_t want = frame_got_ < 9 ? 9 : 9 + ((frame_[0] << 16) | (frame_[1] << 8) | frame_[2]);
    if (frame_got_ == 9 && want > 9 + kFrameMax) {
      // Beyond our SETTINGS_MAX_FRAME_SIZE (the default): a protocol error.
      Abort("the peer sent a frame of " + std::to_string(want - 9) + " bytes");
      return -1;
    }
    if (frame_got_ == want) return 1;
    if (frame_.size() < want) frame_.resize(want);
    uint8_t type = kRecordData;
    ssize_t r = RecvRecord(fd_.get(), frame_.data() + frame_got_, want - frame_got_, &type);
    if (r < 0 && errno == EAGAIN) return 0;
    if (r <= 0) {
      Abort(r == 0 ? Target() + " closed the connection" : Errno("read from the HBONE connection", errno));
      return -1;
    }
    if (type == kRecordHandshake) continue;  // the server's NewSessionTicket: no resumption here
    if (type == kRecordAlert) {
      Abort(Target() + " sent a TLS alert");
      return -1;
    }
    if (type != kRecordData) {
      Abort("a TLS record of type " + std::to_string(type) + " from " + Target());
      return -1;
    }
    frame_got_ += static_cast<size_t>(r);
  }
}

void KtlsTunnel::ReadH2() {
  // One whole frame at a time, so the socket is at a frame boundary when the
  // answer has been read: the module starts there.
  while (state_ == kH2 && !(got_response_ && (settings_acked_ || status_ != 200 || response_end_))) {
    int r = ReadFrame();
    if (r < 0) return;
    if (r == 0) break;  // more later; what nghttp2 has to say (a SETTINGS ACK) goes now
    ssize_t rv = nghttp2_session_mem_recv(h2_, frame_.data(), frame_got_);
    frame_got_ = 0;
    if (rv < 0) {
      Fail("H2_HANDSHAKE_FAILURE", 0, std::string("HTTP/2 error from ") + Target() + ": " + nghttp2_strerror(static_cast<int>(rv)));
      return;
    }
    if (!h2_error_.empty()) {
      Fail("CONNECT", status_, h2_error_);
      return;
    }
  }
  if (state_ != kH2) return;
  if (got_response_ && status_ != 200) {
    // ztunnel's client: a non-200 answer fails the connection, flag CONNECT.
    Fail("CONNECT", status_, "answered HTTP " + std::to_string(status_));
    return;
  }
  if (got_response_ && response_end_) {
    Fail("CONNECT", status_, "the peer ended the stream with its answer");
    return;
  }
  FlushH2();
}

void KtlsTunnel::OnFrame(const nghttp2_frame* f) {
  switch (f->hd.type) {
    case NGHTTP2_SETTINGS:
      if (f->hd.flags & NGHTTP2_FLAG_ACK) settings_acked_ = true;
      break;
    case NGHTTP2_HEADERS:
      if (f->hd.stream_id == sid_ && f->headers.cat == NGHTTP2_HCAT_RESPONSE) {
        got_response_ = true;
        response_end_ = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
      }
      break;
    case NGHTTP2_GOAWAY:
      if (f->goaway.last_stream_id < sid_) h2_error_ = "the peer sent GOAWAY before the answer";
      break;
    default:
      break;
  }
}

void KtlsTunnel::OnStreamClose(int32_t sid, uint32_t code) {
  if (sid == sid_ && !got_response_)
    h2_error_ = "stream closed before a response (code " + std::to_string(code) + ")";
}

// --- the hand-over ------------------------------------------------------------

void KtlsTunnel::HandOver() {
  stream_.stream_id = static_cast<uint32_t>(sid_);
  stream_.max_frame_size = std::clamp<uint32_t>(nghttp2_session_get_remote_settings(h2_, NGHTTP2_SETTINGS_MAX_FRAME_SIZE), 16384, 16777215);
  stream_.conn_send_window = nghttp2_session_get_remote_window_size(h2_);
  stream_.stream_send_window = nghttp2_session_get_stream_remote_window_size(h2_, sid_);
  stream_.recv_window = kStreamWindow;
  // Nothing of the stream was received yet: the full windows, as the peer
  // sees them once it has our SETTINGS (acknowledged) and WINDOW_UPDATE.
  stream_.conn_recv_avail = static_cast<uint32_t>(std::max<int32_t>(0, nghttp2_session_get_local_window_size(h2_)));
  stream_.stream_recv_avail = static_cast<uint32_t>(std::max<int32_t>(0, nghttp2_session_get_stream_local_window_size(h2_, sid_)));
  stream_.max_recv_frame_size = kFrameMax;
  peer_initial_window_ = nghttp2_session_get_remote_settings(h2_, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE);
  nghttp2_session_del(h2_);
  h2_ = nullptr;
  std::vector<uint8_t>().swap(out_);
  if (setsockopt(fd_.get(), SOL_SKEIN_HBONE, SKEIN_HBONE_STREAM, &stream_, sizeof stream_) != 0) {
    Fail("CONNECT", 200, Errno("SKEIN_HBONE_STREAM", errno));
    return;
  }
  if (pipe2(up_, O_NONBLOCK | O_CLOEXEC) != 0 || pipe2(down_, O_NONBLOCK | O_CLOEXEC) != 0) {
    Fail("CONNECT", 200, Errno("pipe2", errno));
    return;
  }
  // Larger pipes, fewer splice calls; the default (64 KiB) is fine too.
  fcntl(up_[1], F_SETPIPE_SZ, kPipeSize);
  fcntl(down_[1], F_SETPIPE_SZ, kPipeSize);
  if (!req_.initial.empty()) {
    ssize_t n = write(up_[1], req_.initial.data(), req_.initial.size());
    if (n != static_cast<ssize_t>(req_.initial.size())) {
      Fail("CONNECT", 200, "cannot queue the bytes read before the hand-over");
      return;
    }
    up_in_pipe_ = req_.initial.size();
    std::string().swap(req_.initial);
  }
  state_ = kCarrying;
  w_->engine()->counters().kmod_tunnels++;
  w_->engine()->Emit({req_.id, EventKind::kOpen, 200, "-", 0, 0, ""});
  Relay();
}

// --- the relay ------------------------------------------------------------------

void KtlsTunnel::Relay() {
  // A few passes at most: a detach below wants the frames already in at once
  // (edge-triggered, nothing would wake us for them).
  for (int pass = 0; pass < 4; pass++) {
    if (state_ == kDone) return;
    PumpDown();
    if (state_ == kDone) return;
    if (state_ == kCarrying) PumpUp();
    if (state_ == kDone) return;
    if (up_shut_ && pod_shut_ && up_in_pipe_ == 0 && down_in_pipe_ == 0 && held_.empty()) {
      Finish("");
      return;
    }
    if (state_ == kCarrying && peer_eof_ && !up_shut_ && (window_blocked_ || tunnel_edge_)) {
      // The module reads no frame after the peer's END_STREAM: userspace
      // reads what comes while our side still sends (WINDOW_UPDATE, and
      // RST_STREAM, GOAWAY or the connection's end, which end the tunnel).
      tunnel_edge_ = false;
      Detach(false);
      continue;
    }
    break;
  }
  if (state_ == kDone) return;
  Rearm();
}

void KtlsTunnel::PumpUp() {
  // pod → pipe → the module (DATA frames) → kTLS.
  for (;;) {
    if (up_in_pipe_ > 0 && !window_blocked_) {
      ssize_t n = splice(up_[0], nullptr, fd_.get(), nullptr, up_in_pipe_, SPLICE_F_NONBLOCK | SPLICE_F_MOVE | SPLICE_F_MORE);
      if (n > 0) {
        up_in_pipe_ -= static_cast<size_t>(n);
        sent_ += static_cast<uint64_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        skein_hbone_info info{};
        socklen_t il = sizeof info;
        if (getsockopt(fd_.get(), SOL_SKEIN_HBONE, SKEIN_HBONE_INFO, &info, &il) == 0 &&
            std::min(info.conn_send_window, info.stream_send_window) <= 0) {
          // The peer's window is shut; the module wakes no writer when it
          // opens, but the WINDOW_UPDATE is a read edge (Rearm).
          window_blocked_ = true;
        }
        break;
      }
      if (n < 0 && errno == ENOMSG) break;  // the reader side detaches
      Abort(Errno("write to the HBONE connection", n < 0 ? errno : EPIPE));
      return;
    }
    if (!pod_eof_ && up_in_pipe_ == 0) {
      ssize_t n = splice(req_.pod.get(), nullptr, up_[1], nullptr, kPipeSize, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
      if (n > 0) {
        up_in_pipe_ += static_cast<size_t>(n);
        continue;
      }
      if (n == 0) {
        pod_eof_ = true;
        break;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      Abort(Errno("read from the pod", errno));
      return;
    }
    break;
  }
  if (pod_eof_ && up_in_pipe_ == 0 && !up_shut_) {
    // The module sends END_STREAM (HBONE's half-close); the connection stays
    // open for the other direction.
    shutdown(fd_.get(), SHUT_WR);
    up_shut_ = true;
  }
}

void KtlsTunnel::PumpDown() {
  // kTLS → the module (DATA payload) → pipe → pod.
  for (;;) {
    if (down_in_pipe_ > 0) {
      ssize_t n = splice(down_[0], nullptr, req_.pod.get(), nullptr, down_in_pipe_, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
      if (n > 0) {
        down_in_pipe_ -= static_cast<size_t>(n);
        recv_ += static_cast<uint64_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      Abort(Errno("write to the pod", n < 0 ? errno : EPIPE));
      return;
    }
    if (!held_.empty()) {
      ssize_t n = write(down_[1], held_.data(), held_.size());
      if (n > 0) {
        held_.erase(0, static_cast<size_t>(n));
        down_in_pipe_ += static_cast<size_t>(n);
        continue;
      }
      break;
    }
    if (state_ == kDetached) {
      int r = HandleRawFrame();
      if (r < 0) return;
      if (r == 0) break;
      continue;
    }
    if (!peer_eof_) {
      // The module takes any WINDOW_UPDATE in this read: the send side may go on.
      window_blocked_ = false;
      ssize_t n = splice(fd_.get(), nullptr, down_[1], nullptr, kPipeSize, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
      if (n > 0) {
        down_in_pipe_ += static_cast<size_t>(n);
        continue;
      }
      if (n == 0) {
        peer_eof_ = true;
        break;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      if (errno == ENOMSG) {
        Detach(true);
        if (state_ == kDone) return;
        continue;
      }
      Abort(errno == EPROTO ? "the peer broke HTTP/2 (the module sent GOAWAY)" : Errno("read from the HBONE connection", errno));
      return;
    }
    break;
  }
  if (peer_eof_ && down_in_pipe_ == 0 && held_.empty() && !pod_shut_) {
    shutdown(req_.pod.get(), SHUT_WR);
    pod_shut_ = true;
  }
}

void KtlsTunnel::Rearm() {
  // The tunnel edge-triggered, for good: kTLS's poll says readable as soon as
  // part of a record has arrived, and a read then finds nothing (EAGAIN), so
  // level-triggered the worker would spin while a record trickles in. Every
  // path above reads the tunnel until EAGAIN unless the pod lags, and then
  // the pod's EPOLLOUT brings it back. A WINDOW_UPDATE for a shut send
  // window is an edge too: the module takes it in that read, then PumpUp
  // goes on.
  uint32_t tun = EPOLLIN | EPOLLOUT | EPOLLET, pod = 0;
  bool carrying = state_ == kCarrying;
  if (carrying && !pod_eof_ && up_in_pipe_ == 0) pod |= EPOLLIN;
  if (down_in_pipe_ > 0) pod |= EPOLLOUT;
  Watch(this, fd_.get(), tun, &fd_mask_, &fd_reg_);
  Watch(&pod_side_, req_.pod.get(), pod, &pod_mask_, &pod_reg_);
}

// --- a frame the module gave back ------------------------------------------------

void KtlsTunnel::Detach(bool fallback) {
  skein_hbone_info info{};
  socklen_t il = sizeof info;
  if (getsockopt(fd_.get(), SOL_SKEIN_HBONE, SKEIN_HBONE_INFO, &info, &il) != 0 ||
      setsockopt(fd_.get(), SOL_SKEIN_HBONE, SKEIN_HBONE_DETACH, nullptr, 0) != 0) {
    Abort(Errno("SKEIN_HBONE_DETACH", errno));
    return;
  }
  if (fallback) w_->engine()->counters().kmod_fallbacks++;
  stream_.conn_send_window = info.conn_send_window;
  stream_.stream_send_window = info.stream_send_window;
  stream_.conn_recv_avail = static_cast<uint32_t>(std::max<int64_t>(0, info.conn_recv_avail));
  stream_.stream_recv_avail = static_cast<uint32_t>(std::max<int64_t>(0, info.stream_recv_avail));
  // What the module delivered but has not yet given back is given back now:
  // the windows are whole again when the stream goes back to it.
  uint8_t wu[26];
  size_t n = 0;
  uint32_t conn_inc = kConnectionWindow > stream_.conn_recv_avail ? kConnectionWindow - stream_.conn_recv_avail : 0;
  uint32_t stream_inc = kStreamWindow > stream_.stream_recv_avail ? kStreamWindow - stream_.stream_recv_avail : 0;
  if (conn_inc > 0) {
    PutFrameHeader(wu, 4, NGHTTP2_WINDOW_UPDATE, 0, 0);
    wu[9] = conn_inc >> 24; wu[10] = conn_inc >> 16; wu[11] = conn_inc >> 8; wu[12] = conn_inc;
    n = 13;
  }
  if (stream_inc > 0 && !peer_eof_) {
    PutFrameHeader(wu + n, 4, NGHTTP2_WINDOW_UPDATE, 0, stream_.stream_id);
    wu[n + 9] = stream_inc >> 24; wu[n + 10] = stream_inc >> 16; wu[n + 11] = stream_inc >> 8; wu[n + 12] = stream_inc;
    n += 13;
  }
  if (n > 0 && !WriteRaw(wu, n)) return;
  stream_.conn_recv_avail = kConnectionWindow;
  stream_.stream_recv_avail = kStreamWindow;
  state_ = kDetached;
  frame_.assign(9, 0);
  frame_got_ = 0;
}

// Writes a control frame in pass-through (a few bytes; waits out a full
// socket buffer briefly rather than queue them).
bool KtlsTunnel::WriteRaw(const uint8_t* p, size_t n) {
  uint64_t until = NowMs() + 1000;
  while (n > 0) {
    ssize_t w = send(fd_.get(), p, n, MSG_NOSIGNAL);
    if (w > 0) {
      p += w;
      n -= static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && (errno == EINTR || errno == EAGAIN) && NowMs() < until) {
      if (errno == EAGAIN) usleep(1000);
      continue;
    }
    Abort(Errno("write to the HBONE connection", w < 0 ? errno : EPIPE));
    return false;
  }
  return true;
}

int KtlsTunnel::HandleRawFrame() {
  int r = ReadFrame();
  if (r < 0) return r;
  if (r == 0) {
    // Nothing more for now. Between frames, and with nothing held by the
    // module, the stream goes back to it: our side must not wait for the
    // peer's next frame to send on.
    if (frame_got_ != 0) return 0;
    skein_hbone_info info{};
    socklen_t il = sizeof info;
    if (getsockopt(fd_.get(), SOL_SKEIN_HBONE, SKEIN_HBONE_INFO, &info, &il) != 0) {
      Abort(Errno("SKEIN_HBONE_INFO", errno));
      return -1;
    }
    if (info.raw_pending != 0) return 0;
    return Restream() ? 0 : -1;
  }
  const uint8_t* h = frame_.data();
  uint32_t len = (h[0] << 16) | (h[1] << 8) | h[2];
  uint8_t type = h[3], flags = h[4];
  uint32_t sid = Be32(h + 5) & 0x7fffffff;
  const uint8_t* pl = h + 9;
  frame_got_ = 0;
  switch (type) {
    case NGHTTP2_DATA: {
      if (sid != stream_.stream_id) break;  // a stream we do not know: its bytes are only window
      size_t pad = 0, off = 0;
      if (flags & NGHTTP2_FLAG_PADDED) {
        if (len < 1 || pl[0] >= len) {
          Abort("a DATA frame with bad padding");
          return -1;
        }
        pad = pl[0];
        off = 1;
      }
      held_.append(reinterpret_cast<const char*>(pl + off), len - off - pad);
      if (flags & NGHTTP2_FLAG_END_STREAM) peer_eof_ = true;
      // Given back at once: the windows stay whole for the module.
      if (len > 0) {
        uint8_t wu[26];
        PutFrameHeader(wu, 4, NGHTTP2_WINDOW_UPDATE, 0, 0);
        wu[9] = len >> 24; wu[10] = len >> 16; wu[11] = len >> 8; wu[12] = len;
        size_t n = 13;
        if (!peer_eof_) {
          PutFrameHeader(wu + 13, 4, NGHTTP2_WINDOW_UPDATE, 0, sid);
          wu[22] = len >> 24; wu[23] = len >> 16; wu[24] = len >> 8; wu[25] = len;
          n = 26;
        }
        if (!WriteRaw(wu, n)) return -1;
      }
      break;
    }
    case NGHTTP2_HEADERS:
      // Trailers on our stream end the peer's half; HEADERS elsewhere are
      // not ours (we decode no more header blocks, so HPACK state is moot).
      if (sid == stream_.stream_id && (flags & NGHTTP2_FLAG_END_STREAM)) peer_eof_ = true;
      break;
    case NGHTTP2_RST_STREAM:
      if (sid == stream_.stream_id) {
        Abort("the peer reset the stream (code " + std::to_string(len >= 4 ? Be32(pl) : 0) + ")");
        return -1;
      }
      break;
    case NGHTTP2_SETTINGS:
      if (flags & NGHTTP2_FLAG_ACK) break;
      for (uint32_t i = 0; i + 6 <= len; i += 6) {
        uint32_t id = (pl[i] << 8) | pl[i + 1], v = Be32(pl + i + 2);
        if (id == NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE) {
          if (v > 0x7fffffff) {
            Abort("SETTINGS_INITIAL_WINDOW_SIZE beyond 2^31-1");
            return -1;
          }
          stream_.stream_send_window += static_cast<int64_t>(v) - peer_initial_window_;
          peer_initial_window_ = v;
        } else if (id == NGHTTP2_SETTINGS_MAX_FRAME_SIZE) {
          if (v < 16384 || v > 16777215) {
            Abort("a bad SETTINGS_MAX_FRAME_SIZE");
            return -1;
          }
          stream_.max_frame_size = v;
        }
      }
      {
        uint8_t ack[9];
        PutFrameHeader(ack, 0, NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK, 0);
        if (!WriteRaw(ack, 9)) return -1;
      }
      break;
    case NGHTTP2_PING:
      if (!(flags & NGHTTP2_FLAG_ACK) && len == 8) {
        uint8_t pong[17];
        PutFrameHeader(pong, 8, NGHTTP2_PING, NGHTTP2_FLAG_ACK, 0);
        std::memcpy(pong + 9, pl, 8);
        if (!WriteRaw(pong, 17)) return -1;
      }
      break;
    case NGHTTP2_WINDOW_UPDATE:
      if (len == 4) {
        uint32_t inc = Be32(pl) & 0x7fffffff;
        if (sid == 0) stream_.conn_send_window += inc;
        else if (sid == stream_.stream_id) stream_.stream_send_window += inc;
      }
      break;
    case NGHTTP2_GOAWAY:
      // The stream goes on if the peer will still process it.
      if (len >= 8 && static_cast<int32_t>(Be32(pl) & 0x7fffffff) < sid_) {
        Abort("the peer sent GOAWAY (code " + std::to_string(Be32(pl + 4)) + ")");
        return -1;
      }
      break;
    case NGHTTP2_PUSH_PROMISE:
      Abort("the peer sent PUSH_PROMISE; push is off");
      return -1;
    default:
      break;  // PRIORITY, CONTINUATION of others' headers, unknown types: ignored
  }
  // Once the module holds nothing more, the stream goes back to it.
  skein_hbone_info info{};
  socklen_t il = sizeof info;
  if (getsockopt(fd_.get(), SOL_SKEIN_HBONE, SKEIN_HBONE_INFO, &info, &il) != 0) {
    Abort(Errno("SKEIN_HBONE_INFO", errno));
    return -1;
  }
  // After the peer's END_STREAM the module would read nothing more, so
  // userspace reads on until EAGAIN (the branch at the top hands back);
  // before it, the module takes over as soon as it holds nothing.
  if (info.raw_pending == 0 && !peer_eof_ && !Restream()) return -1;
  return 1;
}

bool KtlsTunnel::Restream() {
  stream_.conn_send_window = std::clamp<int64_t>(stream_.conn_send_window, -0x7fffffff, 0x7fffffff);
  stream_.stream_send_window = std::clamp<int64_t>(stream_.stream_send_window, -0x7fffffff, 0x7fffffff);
  if (setsockopt(fd_.get(), SOL_SKEIN_HBONE, SKEIN_HBONE_STREAM, &stream_, sizeof stream_) != 0) {
    Abort(Errno("SKEIN_HBONE_STREAM again", errno));
    return false;
  }
  state_ = kCarrying;
  window_blocked_ = false;  // the windows may have grown meanwhile
  return true;
}

// --- ends -------------------------------------------------------------------------

void KtlsTunnel::Decline(const std::string& why) {
  // Nothing of the pod read, no byte of HTTP/2 sent: the pooled userspace
  // path takes it as if the module were not there.
  w_->engine()->counters().kmod_declined++;
  // Said once per process: the counter (stats().kmodDeclined) tells the rest.
  static std::atomic<bool> said{false};
  if (!said.exchange(true))
    std::fprintf(stderr, "skein hbone: the kernel module did not take a tunnel to %s (%s); it goes the userspace way\n",
               Target().c_str(), why.c_str());
  state_ = kDone;
  Watch(this, fd_.get(), 0, &fd_mask_, &fd_reg_);
  Watch(&timer_side_, timer_.get(), 0, &timer_mask_, &timer_reg_);
  fd_.reset();
  OutboundRequest r = std::move(req_);
  r.no_kmod = true;
  w_->Bury(this);
  w_->Dispatch(std::move(r));
}

void KtlsTunnel::Fail(const char* flag, int status, const std::string& why) {
  if (state_ == kDone) return;
  state_ = kDone;
  Watch(this, fd_.get(), 0, &fd_mask_, &fd_reg_);
  Watch(&pod_side_, req_.pod.get(), 0, &pod_mask_, &pod_reg_);
  Watch(&timer_side_, timer_.get(), 0, &timer_mask_, &timer_reg_);
  req_.pod.reset();
  fd_.reset();
  w_->engine()->Emit({req_.id, EventKind::kFail, status, flag, 0, 0, why});
  w_->Bury(this);
}

void KtlsTunnel::Abort(const std::string& why) {
  if (state_ == kDone) return;
  if (state_ < kCarrying) {
    Fail(state_ == kH2 ? "H2_HANDSHAKE_FAILURE" : "CONNECT", 0, why);
    return;
  }
  // One stream per connection: closing it ends the stream for the peer.
  // The pod sees a reset, as from the userspace relay's abort.
  struct linger lg = {1, 0};
  setsockopt(req_.pod.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  Finish(why);
}

// TypeScript ended the tunnel (closeOutbound: its pod left the mesh). The
// peer's stream ends with the connection (one stream each); the pod gets a
// FIN and is read until its own, as a pooled tunnel's (Worker::CloseLingering).
void KtlsTunnel::Close(const std::string& why) {
  if (state_ == kDone) return;
  if (state_ < kCarrying) {
    Abort(why);
    return;
  }
  Watch(&pod_side_, req_.pod.get(), 0, &pod_mask_, &pod_reg_);
  w_->CloseLingering(std::move(req_.pod), false);
  Finish(why);
}

void KtlsTunnel::Finish(const std::string& error) {
  if (state_ == kDone) return;
  skein_hbone_info info{};
  socklen_t il = sizeof info;
  Counters& c = w_->engine()->counters();
  if (getsockopt(fd_.get(), SOL_SKEIN_HBONE, SKEIN_HBONE_INFO, &info, &il) == 0) {
    c.kmod_tx_bytes += info.tx_bytes;
    c.kmod_rx_bytes += info.rx_bytes;
  }
  c.bytes_sent += sent_;
  c.bytes_recv += recv_;
  state_ = kDone;
  Watch(this, fd_.get(), 0, &fd_mask_, &fd_reg_);
  Watch(&pod_side_, req_.pod.get(), 0, &pod_mask_, &pod_reg_);
  Watch(&timer_side_, timer_.get(), 0, &timer_mask_, &timer_reg_);
  for (int* p : {up_, down_}) {
    for (int i = 0; i < 2; i++) {
      if (p[i] >= 0) close(p[i]);
      p[i] = -1;
    }
  }
  fd_.reset();
  req_.pod.reset();
  w_->engine()->Emit({req_.id, EventKind::kClose, 200, "-", sent_, recv_, error});
  w_->Bury(this);
}

}  // namespace

void StartKtlsTunnel(Worker* w, OutboundRequest req) {
  auto* t = new KtlsTunnel(w, std::move(req));
  t->Start();
}

bool CloseKtlsTunnel(Worker*, uint32_t id, const std::string& why) {
  auto it = tunnels.find(id);
  if (it == tunnels.end() || it->second->dead) return false;
  it->second->Close(why);
  return true;
}

void CloseKtlsTunnels(Worker*) {
  std::vector<KtlsTunnel*> all;
  all.reserve(tunnels.size());
  for (auto& [id, t] : tunnels) all.push_back(t);
  for (KtlsTunnel* t : all) {
    if (!t->dead) t->EngineClosed();
  }
}

void KtlsKeylog(const SSL* ssl, const char* line) {
  auto* s = static_cast<Secrets*>(SSL_get_ex_data(ssl, SecretsIndex()));
  if (s == nullptr) return;
  const char* sp = std::strrchr(line, ' ');
  if (sp == nullptr) return;
  size_t hexlen = std::strlen(sp + 1);
  if (hexlen != 64 && hexlen != 96) return;
  if (std::strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0 && Unhex(sp + 1, hexlen, s->client)) {
    s->client_len = hexlen / 2;
  } else if (std::strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0 && Unhex(sp + 1, hexlen, s->server)) {
    s->server_len = hexlen / 2;
  }
}

}  // namespace skein::hbone
