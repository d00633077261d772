// SPDX-License-Identifier: Apache-2.0
// The native HBONE engine: worker threads, each an epoll loop, carrying
// pooled HBONE client sessions (TLS 1.3 + HTTP/2 CONNECT) and relaying pod
// sockets through them. It decides nothing: every connection arrives with
// the decision TypeScript made (decide/outbound.ts), and every end goes back
// as an event, in batches. Design: docs/native-engine.md.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tls.h"

namespace skein::hbone {

// An fd closed on destruction unless released.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept;
  ~Fd();
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset();

 private:
  int fd_ = -1;
};

// One outbound connection and its decision, as TypeScript hands it over.
struct OutboundRequest {
  uint32_t id = 0;  // TypeScript's; echoed in every event
  Fd pod;           // the pod's socket (a dup; the engine owns it)
  std::shared_ptr<Credential> cred;
  std::string pool_key;
  std::vector<std::string> expected;  // SPIFFE URIs the server leaf may carry
  sockaddr_storage upstream{};
  socklen_t upstream_len = 0;
  Fd netns;  // where to make the upstream socket (-1: the engine's own)
  uint32_t mark = 0;
  // TCP keepalive on the upstream socket (0: off): TCP_KEEPIDLE, _KEEPINTVL, _KEEPCNT.
  uint32_t keepalive_time = 0, keepalive_interval = 0, keepalive_retries = 0;
  std::string authority;
  std::vector<std::pair<std::string, std::string>> headers;
  // What the pod sent that Node read before the hand-over; goes first.
  std::string initial;
  // Set when the module path gave it back (ktls.cc): the pooled userspace path.
  bool no_kmod = false;
};

// One accepted 15008 connection: the server side of HBONE.
struct InboundRequest {
  uint32_t session = 0;  // TypeScript's; echoed in its events
  Fd conn;               // the accepted TCP socket (a dup)
  std::shared_ptr<Credential> cred;
  std::string trust_domain;  // a client needs a SPIFFE SAN in it
};

// A listening socket (a pod's 15001) the engine accepts on, so no pod
// socket passes through Node: each connection is parked, reported
// (kAccept), and waits for TypeScript's decision (Engine::TakeAccepted).
struct ListenRequest {
  uint32_t listener = 0;  // TypeScript's; echoed in its kAccept events
  Fd fd;                  // a dup; the engine owns it
};

// An upstream for the engine to connect, as TypeScript decided it
// (decide/inbound.ts): made in the pod's netns with its mark, bound first to
// `from` with IP_TRANSPARENT when set (the client's address), and `header`
// (a PROXY v2 header) written before any client byte.
struct Dial {
  sockaddr_storage to{};
  socklen_t to_len = 0;  // 0: no dial
  sockaddr_storage from{};
  socklen_t from_len = 0;
  Fd netns;
  uint32_t mark = 0;
  uint32_t keepalive_time = 0, keepalive_interval = 0, keepalive_retries = 0;
  std::string header;
};

// TypeScript's answer to one CONNECT (after decide/ and authz): 200 with the
// upstream it connected, 200 with an upstream for the engine to connect
// (the client hears 200 once connected, 503 if not; kDial says which), or
// an error status.
struct Answer {
  uint32_t session = 0;
  int32_t stream = 0;
  int status = 0;
  Fd upstream;
  Dial dial;
  std::string baggage;
  std::string initial;  // what Node had read from the upstream; goes first
};

// TypeScript closing an inbound tunnel or session: a policy change revoked
// the tunnel (reset), or the pod is going (GOAWAY, then close).
struct Control {
  // kCloseOutbound: an outbound tunnel by its id (its pod left the mesh).
  // kUnlisten: a listener by its id (`session`) stops accepting.
  // kRecheckCrls: new CRLs are in force; sessions whose chain they revoke close.
  enum Kind : uint8_t { kResetStream, kGoaway, kCloseSession, kCloseOutbound, kUnlisten, kRecheckCrls };
  Kind kind = kResetStream;
  uint32_t session = 0;
  int32_t stream = 0;  // kResetStream only
  uint32_t id = 0;     // kCloseOutbound only
  std::string reason;
};

// The numbers are what TypeScript decodes (KINDS in bpf/lib/hbone-engine.ts).
enum class EventKind : uint8_t {
  kOpen = 1,        // outbound: the peer answered 200
  kFail = 2,        // outbound: never opened
  kClose = 3,       // a tunnel ended (outbound by id; inbound by session+stream)
  kSession = 4,     // inbound: handshake done, fields[0] the client's identity
  kReject = 5,      // inbound: the handshake or the identity check failed
  kRequest = 6,     // inbound: a request; fields: method, authority, then name, value, …
  kSessionEnd = 7,  // inbound: the connection is gone
  kDial = 8,        // inbound: a dial's end: status 200 (the tunnel is open) or the status answered, and why
  kAccept = 9,      // a listener's connection, parked by id; session the listener; fields: source ip,
                    // port, original destination ip, port ("" when it has none, message says why)
  kListenerClosed = 10,  // a listener is gone: no kAccept of it follows
};

// What goes back to TypeScript. kFail: the tunnel never opened (status is
// the CONNECT answer when there was one, flag ztunnel's response flag);
// kClose: bytes each way and "" or the first error.
struct Event {
  uint32_t id;
  EventKind kind;
  int status;
  const char* flag;  // a static string
  uint64_t sent;     // pod → peer (inbound: upstream → client)
  uint64_t recv;     // peer → pod (inbound: client → upstream)
  std::string message;
  uint32_t session = 0;
  int32_t stream = 0;
  std::vector<std::string> fields = {};
};

struct Limits {
  uint32_t max_streams = 100;          // POOL_MAX_STREAMS_PER_CONNECTION
  uint32_t idle_ms = 5 * 60 * 1000;    // POOL_UNUSED_RELEASE_TIMEOUT
  uint32_t connect_timeout_ms = 10000;
  uint32_t ping_interval_ms = 10000;
  uint32_t ping_timeout_ms = 20000;
  // Streams a pooled connection opens in its life: then it leaves the pool
  // and ends with its last stream. The default is every client stream id
  // HTTP/2 has (odd, 31 bits); past them nghttp2 refuses to open more.
  uint32_t streams_per_connection = 1u << 30;
  // TLS records a connection sends under one key before it updates its keys
  // (KeyUpdate). AES-GCM's confidentiality limit in TLS 1.3 is 2^24.5 full
  // records (RFC 8446, 5.5); OpenSSL does not update by itself, rustls
  // (ztunnel) does as it nears the limit.
  uint32_t key_update_records = 1u << 23;
  // Carry outbound tunnels on the kernel module over kTLS (ktls.h); TypeScript
  // sets it when its probe found the module and kTLS.
  bool kmod = false;
};

struct Counters {
  std::atomic<uint64_t> sessions_opened{0};
  std::atomic<uint64_t> sessions_live{0};
  std::atomic<uint64_t> key_updates{0};
  std::atomic<uint64_t> streams_live{0};
  std::atomic<uint64_t> bytes_sent{0};
  std::atomic<uint64_t> bytes_recv{0};
  // The module path (ktls.cc): tunnels handed to it, frames it gave back to
  // userspace (fallbacks), tunnels it could not take (sent to the pooled
  // path), and DATA payload it carried each way (its SKEIN_HBONE_INFO).
  std::atomic<uint64_t> kmod_tunnels{0};
  std::atomic<uint64_t> kmod_fallbacks{0};
  std::atomic<uint64_t> kmod_declined{0};
  std::atomic<uint64_t> kmod_tx_bytes{0};
  std::atomic<uint64_t> kmod_rx_bytes{0};
  // Peer chains a CRL revokes (CheckRevocation), at handshake or at a
  // reload: servers this client refused, clients this server refused.
  std::atomic<uint64_t> crl_rejections_source{0};
  std::atomic<uint64_t> crl_rejections_destination{0};
};

class Worker;

class Engine {
 public:
  using Sink = std::function<void()>;  // "events are waiting"; any thread
  Engine(unsigned workers, Limits limits, Sink sink);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Hands a connection to the worker that owns its pool key.
  void Outbound(OutboundRequest req);
  // Hands an accepted 15008 connection to the worker of its session id.
  void Inbound(InboundRequest req);
  // TypeScript's answer to a kRequest.
  void Respond(Answer a);
  // Closes an inbound tunnel or session (to the worker of its session id).
  void Control(struct Control c);
  // The CRLs new handshakes are checked against (none: no checks), and a
  // re-check of every open session against them.
  void SetCrls(std::shared_ptr<const CrlList> crls);
  std::shared_ptr<const CrlList> crls();  // any thread
  // Starts accepting on a listener (on the worker of its id).
  void Listen(ListenRequest r);
  // Stops it at once: shut down here, so the kernel hands what is still
  // queued to another listener of the port (tcp_migrate_req) instead of
  // the worker accepting it meanwhile; the worker then closes it and says
  // so (kListenerClosed).
  void Unlisten(uint32_t listener);
  // A parked connection, now TypeScript's to decide: an empty Fd when there
  // is none by that id (never parked, already taken, or the engine stopped).
  Fd TakeAccepted(uint32_t id);
  // Takes the events collected so far (the JavaScript thread).
  std::vector<Event> TakeEvents();
  // Stops the workers: every session and stream is closed, and each stream
  // still open reports kClose (or kFail) with "engine closed".
  void Stop();

  // Worker side.
  void Emit(Event e);
  // Parks an accepted connection until TakeAccepted; its id (never 0).
  uint32_t Park(Fd fd);
  const Limits& limits() const { return limits_; }
  Counters& counters() { return counters_; }
  unsigned workers() const { return static_cast<unsigned>(workers_.size()); }

 private:
  Limits limits_;
  Sink sink_;
  Counters counters_;
  std::mutex crls_mu_;
  std::shared_ptr<const CrlList> crls_;  // under crls_mu_
  std::vector<std::unique_ptr<Worker>> workers_;
  std::mutex events_mu_;
  std::vector<Event> events_;
  std::unordered_map<uint32_t, int> listening_;  // JavaScript thread only: the acceptors' fds
  std::mutex parked_mu_;
  std::unordered_map<uint32_t, Fd> parked_;
  uint32_t last_parked_ = 0;  // under parked_mu_
  bool stopped_ = false;
};

}  // namespace skein::hbone
