// SPDX-License-Identifier: Apache-2.0
// The engine as seen from JavaScript (typed in bpf/lib/hbone-engine.d.ts):
//   new HboneEngine(options, onEvents(events[]))
//   addCredential(chainPem, keyPem, rootsPem): number
//   removeCredential(id)
//   outbound({ id, fd | accepted, credential, poolKey, expected, upstream,
//              netns, mark, authority, headers })
//   listen({ listener, fd }), unlisten({ listener }), release(accepted)
//   inbound({ session, fd, credential, trustDomain }), answer({ session,
//   stream, status, fd?, baggage?, initial? }), closeTunnel({ session,
//   stream, reason }), closeSession({ session, graceful })
//   stats(), close()
// One call per connection in, one call per batch of events out; no bytes
// cross this boundary.
#include <arpa/inet.h>
#include <fcntl.h>
#include <napi.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>

#include "../errors.h"
#include "engine.h"

namespace skein::hbone {

namespace {

constexpr const char* kCtorUsage =
    "new HboneEngine(options: { workers?: number, maxStreams?: number, idleTimeoutMs?: number, "
    "connectTimeoutMs?: number, pingIntervalMs?: number, pingTimeoutMs?: number, "
    "streamsPerConnection?: number, keyUpdateRecords?: number, kmod?: boolean, groups?: string }, "
    "onEvents: (events: object[]) => void)";
constexpr const char* kOutboundUsage =
    "engine.outbound({ id: number, fd: number (or accepted: number), credential: number, poolKey: string, "
    "expected: string[], upstream: { ip: string, port: number }, netns: number, mark: number, "
    "authority: string, headers: string[], initial?: Buffer, "
    "keepalive?: { timeSeconds: number, intervalSeconds: number, retries: number } })";

uint32_t OptU32(const Napi::Object& o, const char* name, uint32_t dflt, uint32_t min,
                uint32_t max, const char* usage) {
  Napi::Value v = o.Get(name);
  if (v.IsUndefined()) return dflt;
  if (!v.IsNumber()) ThrowUsage(o.Env(), usage);
  double d = v.As<Napi::Number>().DoubleValue();
  if (d < min || d > max || d != static_cast<uint32_t>(d)) ThrowUsage(o.Env(), usage);
  return static_cast<uint32_t>(d);
}

std::string Str(const Napi::Object& o, const char* name, const char* usage) {
  Napi::Value v = o.Get(name);
  if (!v.IsString()) ThrowUsage(o.Env(), usage);
  return v.As<Napi::String>().Utf8Value();
}

// The engine's own copy of a JavaScript fd (a netns), which outlives
// whatever JavaScript does with the original.
int DupFd(Napi::Env env, double v, const char* what, const char* usage) {
  if (v < 0 || v > 0x7fffffff || v != static_cast<int>(v)) ThrowUsage(env, usage);
  int fd = fcntl(static_cast<int>(v), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(env, "fcntl", std::string("F_DUPFD_CLOEXEC of the ") + what);
  return fd;
}

// A socket's, non-blocking: the workers never block on one.
int DupSocket(Napi::Env env, double v, const char* what, const char* usage) {
  int fd = DupFd(env, v, what, usage);
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0 && (fl & O_NONBLOCK) == 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  return fd;
}

// A method's one options object; throws the usage otherwise.
Napi::Object OptionsArg(const Napi::CallbackInfo& info, const char* usage) {
  if (info.Length() < 1 || !info[0].IsObject()) ThrowUsage(info.Env(), usage);
  return info[0].As<Napi::Object>();
}

// An IPv4 or IPv6 address and port; throws ERR_INVALID_IP_ADDRESS.
socklen_t SockAddr(Napi::Env env, const std::string& ip, uint32_t port, sockaddr_storage* ss, const char* what) {
  auto* sin = reinterpret_cast<sockaddr_in*>(ss);
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(ss);
  if (inet_pton(AF_INET, ip.c_str(), &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons(static_cast<uint16_t>(port));
    return sizeof *sin;
  }
  if (inet_pton(AF_INET6, ip.c_str(), &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(static_cast<uint16_t>(port));
    return sizeof *sin6;
  }
  Napi::TypeError e = Napi::TypeError::New(env, std::string(what) + ": not an IPv4 or IPv6 address: '" + ip + "'");
  e.Set("code", "ERR_INVALID_IP_ADDRESS");
  throw e;
}

// `keepalive?: { timeSeconds, intervalSeconds, retries }` of an options object.
void Keepalive(const Napi::Object& o, uint32_t* time, uint32_t* interval, uint32_t* retries, const char* usage) {
  Napi::Value kv = o.Get("keepalive");
  if (kv.IsUndefined()) return;
  if (!kv.IsObject()) ThrowUsage(o.Env(), usage);
  Napi::Object k = kv.As<Napi::Object>();
  *time = OptU32(k, "timeSeconds", 0, 1, 32767, usage);
  *interval = OptU32(k, "intervalSeconds", 0, 1, 32767, usage);
  *retries = OptU32(k, "retries", 0, 1, 127, usage);
  if (*time == 0 || *interval == 0 || *retries == 0) ThrowUsage(o.Env(), usage);
}

// HTTP/2 field names are lower-case tokens; values carry no CR, LF or NUL.
bool ValidName(const std::string& n) {
  if (n.empty()) return false;
  for (char c : n) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
    if (!ok || c == '\0') return false;
  }
  return true;
}

bool ValidValue(const std::string& v) {
  return v.find_first_of(std::string("\r\n\0", 3)) == std::string::npos;
}

}  // namespace

class HboneEngine : public Napi::ObjectWrap<HboneEngine> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function cls = DefineClass(
        env, "HboneEngine",
        {
            InstanceMethod("addCredential", &HboneEngine::AddCredential),
            InstanceMethod("removeCredential", &HboneEngine::RemoveCredential),
            InstanceMethod("setCrls", &HboneEngine::SetCrls),
            InstanceMethod("outbound", &HboneEngine::Outbound),
            InstanceMethod("inbound", &HboneEngine::Inbound),
            InstanceMethod("answer", &HboneEngine::Answer),
            InstanceMethod("closeTunnel", &HboneEngine::CloseTunnel),
            InstanceMethod("closeOutbound", &HboneEngine::CloseOutbound),
            InstanceMethod("closeSession", &HboneEngine::CloseSession),
            InstanceMethod("listen", &HboneEngine::Listen),
            InstanceMethod("unlisten", &HboneEngine::Unlisten),
            InstanceMethod("release", &HboneEngine::Release),
            InstanceMethod("stats", &HboneEngine::Stats),
            InstanceMethod("close", &HboneEngine::Close),
        });
    exports.Set("HboneEngine", cls);
  }

  explicit HboneEngine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<HboneEngine>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsFunction()) ThrowUsage(env, kCtorUsage);
    Napi::Object o = info[0].As<Napi::Object>();
    unsigned workers = OptU32(o, "workers", 2, 1, 64, kCtorUsage);
    Limits l;
    l.max_streams = OptU32(o, "maxStreams", l.max_streams, 1, 1u << 20, kCtorUsage);
    l.idle_ms = OptU32(o, "idleTimeoutMs", l.idle_ms, 1, 0x7fffffff, kCtorUsage);
    l.connect_timeout_ms = OptU32(o, "connectTimeoutMs", l.connect_timeout_ms, 1, 0x7fffffff, kCtorUsage);
    l.ping_interval_ms = OptU32(o, "pingIntervalMs", l.ping_interval_ms, 1, 0x7fffffff, kCtorUsage);
    l.ping_timeout_ms = OptU32(o, "pingTimeoutMs", l.ping_timeout_ms, 1, 0x7fffffff, kCtorUsage);
    l.streams_per_connection = OptU32(o, "streamsPerConnection", l.streams_per_connection, 1, 1u << 30, kCtorUsage);
    l.key_update_records = OptU32(o, "keyUpdateRecords", l.key_update_records, 1, 1u << 24, kCtorUsage);
    Napi::Value km = o.Get("kmod");
    if (!km.IsUndefined() && !km.IsBoolean()) ThrowUsage(env, kCtorUsage);
    l.kmod = km.IsBoolean() && km.As<Napi::Boolean>().Value();
    Napi::Value gr = o.Get("groups");
    if (!gr.IsUndefined() && !gr.IsString()) ThrowUsage(env, kCtorUsage);
    if (gr.IsString()) {
      groups_ = gr.As<Napi::String>().Utf8Value();
      // Refused here, not at the first certificate: a policy this OpenSSL
      // cannot keep must stop the start, never loosen to the defaults.
      std::string why = CheckGroups(groups_);
      if (!why.empty()) throw Napi::Error::New(env, "new HboneEngine: " + why);
    }
    tsfn_ = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "skein-hbone-engine", 0, 1);
    // An idle engine does not keep the process alive; its listeners do.
    tsfn_.Unref(env);
    try {
      engine_ = std::make_shared<Engine>(workers, l, [this]() { Wake(); });
    } catch (const std::exception& e) {
      tsfn_.Release();
      throw Napi::Error::New(env, e.what());
    }
  }

  ~HboneEngine() override { Shutdown(); }

 private:
  void Wake() {
    std::weak_ptr<Engine> weak = engine_;
    tsfn_.NonBlockingCall([weak](Napi::Env env, Napi::Function fn) {
      std::shared_ptr<Engine> e = weak.lock();
      if (!e || env == nullptr) return;
      std::vector<Event> events = e->TakeEvents();
      if (events.empty()) return;
      // This runs from libuv, outside any JS frame: a C++ exception escaping
      // it is std::terminate. Building the array throws Napi::Error when the
      // environment can no longer run JS (teardown at exit, after
      // process.exit or a worker's terminate): the events then have no one
      // to hear them and are dropped.
      Napi::Array arr;
      try {
        arr = EventsArray(env, events);
      } catch (const Napi::Error&) {
        return;
      }
      try {
        fn.Call({arr});
      } catch (const Napi::Error& err) {
        // The handler threw: uncaught, as if it had run from JS. Reading
        // the error can itself fail in teardown; nothing to report then.
        try {
          napi_fatal_exception(env, err.Value());
        } catch (const Napi::Error&) {
        }
      }
    });
  }

  // The events as one flat array, kEventSlots values each (the order
  // bpf/lib/hbone-engine.ts decodes): positional elements, where an object
  // per event cost a property-name lookup and a map transition per field.
  static constexpr uint32_t kEventSlots = 10;
  static Napi::Array EventsArray(Napi::Env env, const std::vector<Event>& events) {
    Napi::Array arr = Napi::Array::New(env, events.size() * kEventSlots);
    uint32_t k = 0;
    for (const Event& ev : events) {
      arr.Set(k++, ev.id);
      arr.Set(k++, static_cast<uint32_t>(ev.kind));
      arr.Set(k++, ev.status);
      arr.Set(k++, ev.flag);
      arr.Set(k++, static_cast<double>(ev.sent));
      arr.Set(k++, static_cast<double>(ev.recv));
      arr.Set(k++, ev.message);
      arr.Set(k++, ev.session);
      arr.Set(k++, ev.stream);
      if (ev.fields.empty()) {
        arr.Set(k++, env.Undefined());
      } else {
        Napi::Array fields = Napi::Array::New(env, ev.fields.size());
        for (size_t j = 0; j < ev.fields.size(); j++) fields.Set(j, ev.fields[j]);
        arr.Set(k++, fields);
      }
    }
    return arr;
  }

  void Shutdown() {
    if (closed_) return;
    closed_ = true;
    // Workers first: they emit their last events while the call still works.
    if (engine_) engine_->Stop();
    tsfn_.Release();
  }

  Engine& Live(Napi::Env env) {
    if (closed_ || !engine_) throw Napi::Error::New(env, "the HBONE engine is closed");
    return *engine_;
  }

  Napi::Value AddCredential(const Napi::CallbackInfo& info) {
    static const char* usage = "engine.addCredential(chainPem: string, keyPem: string, rootsPem: string): number";
    Napi::Env env = info.Env();
    Live(env);
    std::string chain = ArgString(info, 0, usage);
    std::string key = ArgString(info, 1, usage);
    std::string roots = ArgString(info, 2, usage);
    std::shared_ptr<Credential> c;
    try {
      c = std::make_shared<Credential>(chain, key, roots, groups_);
    } catch (const std::exception& e) {
      Napi::Error err = Napi::Error::New(env, std::string("addCredential: ") + e.what());
      err.Set("code", "ERR_HBONE_CREDENTIAL");
      throw err;
    }
    uint32_t id = next_credential_++;
    credentials_[id] = std::move(c);
    return Napi::Number::New(env, id);
  }

  Napi::Value RemoveCredential(const Napi::CallbackInfo& info) {
    uint32_t id = static_cast<uint32_t>(ArgInt(info, 0, "engine.removeCredential(id: number)"));
    // Sessions made with it keep their reference until they end.
    credentials_.erase(id);
    return info.Env().Undefined();
  }

  Napi::Value Outbound(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Engine& engine = Live(env);
    Napi::Object o = OptionsArg(info, kOutboundUsage);
    OutboundRequest r;
    r.id = OptU32(o, "id", 0, 0, 0xffffffffu, kOutboundUsage);
    uint32_t cred = OptU32(o, "credential", 0xffffffffu, 0, 0xffffffffu, kOutboundUsage);
    auto it = credentials_.find(cred);
    if (it == credentials_.end()) {
      Napi::Error err = Napi::Error::New(env, "outbound: no credential " + std::to_string(cred));
      err.Set("code", "ERR_HBONE_CREDENTIAL");
      throw err;
    }
    r.cred = it->second;
    r.pool_key = Str(o, "poolKey", kOutboundUsage);
    Napi::Value ex = o.Get("expected");
    if (!ex.IsArray()) ThrowUsage(env, kOutboundUsage);
    Napi::Array exa = ex.As<Napi::Array>();
    for (uint32_t i = 0; i < exa.Length(); i++) {
      Napi::Value v = exa.Get(i);
      if (!v.IsString()) ThrowUsage(env, kOutboundUsage);
      r.expected.push_back(v.As<Napi::String>().Utf8Value());
    }
    Napi::Value up = o.Get("upstream");
    if (!up.IsObject()) ThrowUsage(env, kOutboundUsage);
    std::string ip = Str(up.As<Napi::Object>(), "ip", kOutboundUsage);
    uint32_t port = OptU32(up.As<Napi::Object>(), "port", 0, 1, 65535, kOutboundUsage);
    r.upstream_len = SockAddr(env, ip, port, &r.upstream, "outbound");
    r.mark = OptU32(o, "mark", 0, 0, 0xffffffffu, kOutboundUsage);
    Keepalive(o, &r.keepalive_time, &r.keepalive_interval, &r.keepalive_retries, kOutboundUsage);
    r.authority = Str(o, "authority", kOutboundUsage);
    if (r.authority.empty() || !ValidValue(r.authority)) ThrowUsage(env, kOutboundUsage);
    Napi::Value hv = o.Get("headers");
    if (!hv.IsUndefined()) {
      if (!hv.IsArray()) ThrowUsage(env, kOutboundUsage);
      Napi::Array ha = hv.As<Napi::Array>();
      if (ha.Length() % 2 != 0) ThrowUsage(env, kOutboundUsage);
      for (uint32_t i = 0; i < ha.Length(); i += 2) {
        Napi::Value n = ha.Get(i), v = ha.Get(i + 1);
        if (!n.IsString() || !v.IsString()) ThrowUsage(env, kOutboundUsage);
        std::string name = n.As<Napi::String>().Utf8Value(), value = v.As<Napi::String>().Utf8Value();
        if (!ValidName(name) || !ValidValue(value)) {
          Napi::TypeError e = Napi::TypeError::New(env, "outbound: invalid HTTP/2 header '" + name + "'");
          e.Set("code", "ERR_HTTP2_INVALID_HEADER_VALUE");
          throw e;
        }
        r.headers.emplace_back(std::move(name), std::move(value));
      }
    }
    Napi::Value iv = o.Get("initial");
    if (!iv.IsUndefined()) {
      if (!iv.IsBuffer()) ThrowUsage(env, kOutboundUsage);
      auto b = iv.As<Napi::Buffer<char>>();
      r.initial.assign(b.Data(), b.Length());
    }
    // Fds last: nothing above can leak them.
    Napi::Value fdv = o.Get("fd"), av = o.Get("accepted"), nsv = o.Get("netns");
    if (fdv.IsNumber() == av.IsNumber() || !(nsv.IsNumber() || nsv.IsUndefined())) ThrowUsage(env, kOutboundUsage);
    uint32_t accepted = av.IsNumber() ? OptU32(o, "accepted", 0, 1, 0xffffffffu, kOutboundUsage) : 0;
    double ns = nsv.IsUndefined() ? -1 : nsv.As<Napi::Number>().DoubleValue();
    if (ns >= 0) r.netns = Fd(DupFd(env, ns, "netns fd", kOutboundUsage));
    r.pod = accepted != 0 ? TakeAccepted(env, engine, accepted)
                          : Fd(DupSocket(env, fdv.As<Napi::Number>().DoubleValue(), "pod socket", kOutboundUsage));
    engine.Outbound(std::move(r));
    return env.Undefined();
  }

  Napi::Value Inbound(const Napi::CallbackInfo& info) {
    static const char* usage =
        "engine.inbound({ session: number, fd: number, credential: number, trustDomain: string })";
    Napi::Env env = info.Env();
    Engine& engine = Live(env);
    Napi::Object o = OptionsArg(info, usage);
    InboundRequest r;
    r.session = OptU32(o, "session", 0, 0, 0xffffffffu, usage);
    uint32_t cred = OptU32(o, "credential", 0xffffffffu, 0, 0xffffffffu, usage);
    auto it = credentials_.find(cred);
    if (it == credentials_.end()) {
      Napi::Error err = Napi::Error::New(env, "inbound: no credential " + std::to_string(cred));
      err.Set("code", "ERR_HBONE_CREDENTIAL");
      throw err;
    }
    r.cred = it->second;
    r.trust_domain = Str(o, "trustDomain", usage);
    Napi::Value fdv = o.Get("fd");
    if (!fdv.IsNumber()) ThrowUsage(env, usage);
    r.conn = Fd(DupSocket(env, fdv.As<Napi::Number>().DoubleValue(), "15008 socket", usage));
    engine.Inbound(std::move(r));
    return env.Undefined();
  }

  Napi::Value Answer(const Napi::CallbackInfo& info) {
    static const char* usage =
        "engine.answer({ session: number, stream: number, status: number, fd?: number, baggage?: string, initial?: Buffer, "
        "dial?: { address: string, port: number, localAddress?: string, netns?: number, mark?: number, "
        "keepalive?: { timeSeconds: number, intervalSeconds: number, retries: number }, header?: Buffer } })";
    Napi::Env env = info.Env();
    Engine& engine = Live(env);
    Napi::Object o = OptionsArg(info, usage);
    hbone::Answer a;
    a.session = OptU32(o, "session", 0, 0, 0xffffffffu, usage);
    a.stream = static_cast<int32_t>(OptU32(o, "stream", 0, 1, 0x7fffffffu, usage));
    a.status = static_cast<int>(OptU32(o, "status", 0, 200, 599, usage));
    Napi::Value bv = o.Get("baggage");
    if (!bv.IsUndefined()) {
      if (!bv.IsString()) ThrowUsage(env, usage);
      a.baggage = bv.As<Napi::String>().Utf8Value();
      if (!ValidValue(a.baggage)) ThrowUsage(env, usage);
    }
    Napi::Value iv = o.Get("initial");
    if (!iv.IsUndefined()) {
      if (!iv.IsBuffer()) ThrowUsage(env, usage);
      auto b = iv.As<Napi::Buffer<char>>();
      a.initial.assign(b.Data(), b.Length());
    }
    Napi::Value fdv = o.Get("fd"), dv = o.Get("dial");
    if (a.status == 200 && dv.IsObject()) {
      Napi::Object d = dv.As<Napi::Object>();
      Dial& dial = a.dial;
      std::string ip = Str(d, "address", usage);
      dial.to_len = SockAddr(env, ip, OptU32(d, "port", 0, 1, 65535, usage), &dial.to, "answer dial");
      Napi::Value lv = d.Get("localAddress");
      if (!lv.IsUndefined()) {
        dial.from_len = SockAddr(env, Str(d, "localAddress", usage), 0, &dial.from, "answer dial localAddress");
        if (dial.from.ss_family != dial.to.ss_family) ThrowUsage(env, usage);
      }
      dial.mark = OptU32(d, "mark", 0, 0, 0xffffffffu, usage);
      Keepalive(d, &dial.keepalive_time, &dial.keepalive_interval, &dial.keepalive_retries, usage);
      Napi::Value hv = d.Get("header");
      if (!hv.IsUndefined()) {
        if (!hv.IsBuffer()) ThrowUsage(env, usage);
        auto b = hv.As<Napi::Buffer<char>>();
        dial.header.assign(b.Data(), b.Length());
      }
      Napi::Value nsv = d.Get("netns");
      if (!nsv.IsUndefined()) {
        if (!nsv.IsNumber()) ThrowUsage(env, usage);
        dial.netns = Fd(DupFd(env, nsv.As<Napi::Number>().DoubleValue(), "netns fd", usage));
      }
    } else if (a.status == 200) {
      if (!fdv.IsNumber()) ThrowUsage(env, usage);
      a.upstream = Fd(DupSocket(env, fdv.As<Napi::Number>().DoubleValue(), "upstream socket", usage));
    }
    engine.Respond(std::move(a));
    return env.Undefined();
  }

  // A policy change revoked an inbound tunnel: it is reset (CANCEL) and its
  // close event carries `reason`.
  Napi::Value CloseTunnel(const Napi::CallbackInfo& info) {
    static const char* usage = "engine.closeTunnel({ session: number, stream: number, reason: string })";
    Napi::Env env = info.Env();
    Engine& engine = Live(env);
    Napi::Object o = OptionsArg(info, usage);
    struct Control c;
    c.kind = Control::kResetStream;
    c.session = OptU32(o, "session", 0, 0, 0xffffffffu, usage);
    c.stream = static_cast<int32_t>(OptU32(o, "stream", 0, 1, 0x7fffffffu, usage));
    c.reason = Str(o, "reason", usage);
    engine.Control(std::move(c));
    return env.Undefined();
  }

  // An outbound tunnel by its id: ended now (its pod left the mesh).
  Napi::Value CloseOutbound(const Napi::CallbackInfo& info) {
    static const char* usage = "engine.closeOutbound({ id: number, reason: string })";
    Napi::Env env = info.Env();
    Engine& engine = Live(env);
    Napi::Object o = OptionsArg(info, usage);
    struct Control c;
    c.kind = Control::kCloseOutbound;
    c.id = OptU32(o, "id", 0, 1, 0xffffffffu, usage);
    c.reason = Str(o, "reason", usage);
    engine.Control(std::move(c));
    return env.Undefined();
  }

  // An inbound session: `graceful` sends GOAWAY (its open tunnels finish),
  // else it is closed now with every tunnel on it.
  Napi::Value CloseSession(const Napi::CallbackInfo& info) {
    static const char* usage = "engine.closeSession({ session: number, graceful: boolean })";
    Napi::Env env = info.Env();
    Engine& engine = Live(env);
    Napi::Object o = OptionsArg(info, usage);
    Napi::Value g = o.Get("graceful");
    if (!g.IsBoolean()) ThrowUsage(env, usage);
    struct Control c;
    c.kind = g.As<Napi::Boolean>().Value() ? Control::kGoaway : Control::kCloseSession;
    c.session = OptU32(o, "session", 0, 0, 0xffffffffu, usage);
    c.reason = "the server closed the connection";
    engine.Control(std::move(c));
    return env.Undefined();
  }

  // A listening socket (a dup) for the engine to accept on; each connection
  // comes back as an `accept` event with the listener's id.
  Napi::Value Listen(const Napi::CallbackInfo& info) {
    static const char* usage = "engine.listen({ listener: number, fd: number })";
    Napi::Env env = info.Env();
    Engine& engine = Live(env);
    Napi::Object o = OptionsArg(info, usage);
    ListenRequest r;
    r.listener = OptU32(o, "listener", 0, 0, 0xffffffffu, usage);
    Napi::Value fdv = o.Get("fd");
    if (!fdv.IsNumber()) ThrowUsage(env, usage);
    r.fd = Fd(DupSocket(env, fdv.As<Napi::Number>().DoubleValue(), "listening socket", usage));
    engine.Listen(std::move(r));
    return env.Undefined();
  }

  Napi::Value Unlisten(const Napi::CallbackInfo& info) {
    static const char* usage = "engine.unlisten({ listener: number })";
    Napi::Env env = info.Env();
    Engine& engine = Live(env);
    engine.Unlisten(OptU32(OptionsArg(info, usage), "listener", 0, 0, 0xffffffffu, usage));
    return env.Undefined();
  }

  // A parked connection's fd, now the caller's to use and close (a
  // connection the engine does not carry: plain TCP, a refusal).
  Napi::Value Release(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t id = static_cast<uint32_t>(ArgInt(info, 0, "engine.release(accepted: number): number"));
    return Napi::Number::New(env, TakeAccepted(env, Live(env), id).release());
  }

  static Fd TakeAccepted(Napi::Env env, Engine& engine, uint32_t id) {
    Fd fd = engine.TakeAccepted(id);
    if (fd.get() < 0) {
      Napi::Error err = Napi::Error::New(env, "no accepted connection " + std::to_string(id) + " (taken already, or the engine stopped)");
      err.Set("code", "ERR_HBONE_ACCEPTED");
      throw err;
    }
    return fd;
  }

  // CRL_PATH's CRLs as DER (TypeScript parsed and checks them too): new
  // handshakes are checked against them and open sessions re-checked. An
  // empty array stops the checks.
  Napi::Value SetCrls(const Napi::CallbackInfo& info) {
    static const char* usage = "engine.setCrls(ders: Buffer[])";
    Napi::Env env = info.Env();
    Engine& engine = Live(env);
    if (info.Length() < 1 || !info[0].IsArray()) ThrowUsage(env, usage);
    Napi::Array a = info[0].As<Napi::Array>();
    std::vector<std::string> ders;
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value v = a.Get(i);
      if (!v.IsBuffer()) ThrowUsage(env, usage);
      auto b = v.As<Napi::Buffer<char>>();
      ders.emplace_back(b.Data(), b.Length());
    }
    std::shared_ptr<const CrlList> list;
    try {
      if (!ders.empty()) list = std::make_shared<const CrlList>(ders);
    } catch (const std::exception& e) {
      Napi::Error err = Napi::Error::New(env, std::string("setCrls: ") + e.what());
      err.Set("code", "ERR_HBONE_CRL");
      throw err;
    }
    engine.SetCrls(std::move(list));
    return env.Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    if (!engine_) return o;
    Counters& c = engine_->counters();
    o.Set("workers", engine_->workers());
    o.Set("sessionsOpened", static_cast<double>(c.sessions_opened.load()));
    o.Set("sessionsLive", static_cast<double>(c.sessions_live.load()));
    o.Set("keyUpdates", static_cast<double>(c.key_updates.load()));
    o.Set("streamsLive", static_cast<double>(c.streams_live.load()));
    o.Set("bytesSent", static_cast<double>(c.bytes_sent.load()));
    o.Set("bytesRecv", static_cast<double>(c.bytes_recv.load()));
    o.Set("credentials", static_cast<double>(credentials_.size()));
    o.Set("kmodTunnels", static_cast<double>(c.kmod_tunnels.load()));
    o.Set("kmodFallbacks", static_cast<double>(c.kmod_fallbacks.load()));
    o.Set("kmodDeclined", static_cast<double>(c.kmod_declined.load()));
    o.Set("kmodTxBytes", static_cast<double>(c.kmod_tx_bytes.load()));
    o.Set("kmodRxBytes", static_cast<double>(c.kmod_rx_bytes.load()));
    o.Set("crlRejectionsSource", static_cast<double>(c.crl_rejections_source.load()));
    o.Set("crlRejectionsDestination", static_cast<double>(c.crl_rejections_destination.load()));
    return o;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown();
    credentials_.clear();
    return info.Env().Undefined();
  }

  Napi::ThreadSafeFunction tsfn_;
  std::shared_ptr<Engine> engine_;
  std::string groups_;  // the key exchange groups of every credential; "" OpenSSL's
  std::map<uint32_t, std::shared_ptr<Credential>> credentials_;
  uint32_t next_credential_ = 1;
  bool closed_ = false;
};

}  // namespace skein::hbone

static Napi::Object InitHbone(Napi::Env env, Napi::Object exports) {
  skein::hbone::HboneEngine::Init(env, exports);
  return exports;
}

NODE_API_MODULE(skein_hbone, InitHbone)
