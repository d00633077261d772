// SPDX-License-Identifier: Apache-2.0
#include "ebpf.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "errors.h"

namespace skein {

namespace {

// ---------------------------------------------------------------------------
// libbpf's log. libbpf says why a load failed (the verifier log among it) only
// through its print callback, which is process-wide. One callback is installed
// at start-up: while a LogCapture is alive on the calling thread, warnings go
// into its buffer (and from there into the thrown error); otherwise they go to
// stderr as libbpf's default would print them. Debug output is dropped.

constexpr size_t kLogKeep = 256 * 1024;  // most kept while capturing
constexpr size_t kLogTail = 2048;        // appended to an error message

thread_local std::string* g_capture = nullptr;

int PrintFn(enum libbpf_print_level level, const char* fmt, va_list ap) {
  if (level == LIBBPF_DEBUG) return 0;
  if (g_capture == nullptr) return std::vfprintf(stderr, fmt, ap);
  char small[512];
  va_list copy;
  va_copy(copy, ap);
  int n = std::vsnprintf(small, sizeof small, fmt, copy);
  va_end(copy);
  if (n < 0) return n;
  if (static_cast<size_t>(n) < sizeof small) {
    g_capture->append(small, n);
  } else {
    std::string big(static_cast<size_t>(n) + 1, '\0');
    std::vsnprintf(big.data(), big.size(), fmt, ap);
    big.resize(n);
    g_capture->append(big);
  }
  if (g_capture->size() > kLogKeep)
    g_capture->erase(0, g_capture->size() - kLogKeep / 2);
  return n;
}

class LogCapture {
 public:
  LogCapture() : prev_(g_capture) { g_capture = &log_; }
  ~LogCapture() { g_capture = prev_; }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  // The last ~2 KB, starting at a line boundary, without trailing newlines.
  std::string Tail() const {
    std::string t = log_;
    if (t.size() > kLogTail) {
      t = t.substr(t.size() - kLogTail);
      size_t nl = t.find('\n');
      if (nl != std::string::npos && nl + 1 < t.size()) t = t.substr(nl + 1);
      t = "...\n" + t;
    }
    while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
    return t;
  }

 private:
  std::string log_;
  std::string* prev_;
};

std::string WithLog(const std::string& what, const LogCapture& log) {
  std::string tail = log.Tail();
  return tail.empty() ? what : what + "\n" + tail;
}

// ---------------------------------------------------------------------------
// Arguments.

const uint8_t* ArgBuffer(const Napi::CallbackInfo& info, size_t i,
                         const char* usage, size_t* len) {
  if (info.Length() <= i || !info[i].IsBuffer()) ThrowUsage(info.Env(), usage);
  auto b = info[i].As<Napi::Buffer<uint8_t>>();
  *len = b.Length();
  return b.Data();
}

uint32_t ArgU32(const Napi::CallbackInfo& info, size_t i, const char* usage) {
  if (info.Length() <= i || !info[i].IsNumber()) ThrowUsage(info.Env(), usage);
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (v < 0 || v > 0xffffffffu || v != static_cast<double>(static_cast<uint32_t>(v)))
    ThrowUsage(info.Env(), usage);
  return static_cast<uint32_t>(v);
}

bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* usage) {
  if (info.Length() <= i || !info[i].IsBoolean()) ThrowUsage(info.Env(), usage);
  return info[i].As<Napi::Boolean>().Value();
}

// libbpf 1.x returns -errno (and sets errno); plain syscalls return -1.
int ErrOf(int rc) { return rc < -1 ? -rc : errno; }

// ---------------------------------------------------------------------------
// What kind of BPF object an fd refers to: the anon inode's name
// ("anon_inode:bpf-map", "anon_inode:bpf-prog"; a link is "bpf_link" when
// made by BPF_LINK_CREATE and "bpf-link" when fetched from a pin). Used where
// a wrong kind would otherwise be misread rather than refused.

std::string FdKind(int fd) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  char buf[256];
  ssize_t n = readlink(path, buf, sizeof buf);
  return n < 0 ? std::string() : std::string(buf, static_cast<size_t>(n));
}

void RequireKind(Napi::Env env, int fd, const char* anon, const char* what,
                 const char* syscall) {
  std::string kind = FdKind(fd);
  if (kind.empty()) return;  // closed: the syscall itself reports EBADF
  std::string want = std::string("anon_inode:") + anon;
  std::string alt = want;
  for (char& ch : alt) ch = ch == '-' ? '_' : ch;
  if (kind != want && kind != alt)
    throw ErrnoError(env, syscall, EINVAL,
                     "fd " + std::to_string(fd) + " is not a " + what + " (" +
                         kind + ")");
}

// ---------------------------------------------------------------------------
// Loading an object file.

const char* kClosedObject = "BPF object is closed";

class BpfObject : public Napi::ObjectWrap<BpfObject> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "BpfObject",
                       {
                           InstanceMethod("programs", &BpfObject::Programs),
                           InstanceMethod("maps", &BpfObject::Maps),
                           InstanceMethod("close", &BpfObject::Close),
                       });
  }

  explicit BpfObject(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<BpfObject>(info) {
    if (info.Length() < 1 || !info[0].IsExternal())
      ThrowUsage(info.Env(), "bpfObjectOpen(path: string)");
    obj_ = info[0].As<Napi::External<bpf_object>>().Data();
  }

  ~BpfObject() override {
    if (obj_ != nullptr) bpf_object__close(obj_);
  }

 private:
  bpf_object* Live(Napi::Env env) {
    if (obj_ == nullptr) {
      Napi::Error e = Napi::Error::New(env, kClosedObject);
      e.Set("code", "ERR_BPF_OBJECT_CLOSED");
      throw e;
    }
    return obj_;
  }

  Napi::Value Programs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bpf_object* obj = Live(env);
    Napi::Array out = Napi::Array::New(env);
    uint32_t i = 0;
    bpf_program* prog;
    bpf_object__for_each_program(prog, obj) {
      Napi::Object p = Napi::Object::New(env);
      p.Set("name", bpf_program__name(prog));
      p.Set("fd", bpf_program__fd(prog));
      p.Set("type", static_cast<uint32_t>(bpf_program__type(prog)));
      p.Set("expectedAttachType",
            static_cast<uint32_t>(bpf_program__expected_attach_type(prog)));
      p.Set("section", bpf_program__section_name(prog));
      out.Set(i++, p);
    }
    return out;
  }

  Napi::Value Maps(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bpf_object* obj = Live(env);
    Napi::Array out = Napi::Array::New(env);
    uint32_t i = 0;
    bpf_map* map;
    bpf_object__for_each_map(map, obj) {
      Napi::Object m = Napi::Object::New(env);
      m.Set("name", bpf_map__name(map));
      m.Set("fd", bpf_map__fd(map));
      m.Set("type", static_cast<uint32_t>(bpf_map__type(map)));
      m.Set("keySize", bpf_map__key_size(map));
      m.Set("valueSize", bpf_map__value_size(map));
      m.Set("maxEntries", bpf_map__max_entries(map));
      out.Set(i++, m);
    }
    return out;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (obj_ != nullptr) bpf_object__close(obj_);
    obj_ = nullptr;
    return info.Env().Undefined();
  }

  bpf_object* obj_ = nullptr;
};

// bpfObjectOpen(path): bpf_object__open_file + bpf_object__load. The
// function's data is a reference to the (unexported) BpfObject class.
Napi::Value BpfObjectOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "bpfObjectOpen(path: string)");
  LogCapture log;
  bpf_object* obj = bpf_object__open_file(path.c_str(), nullptr);
  if (obj == nullptr) {
    int err = errno;
    throw ErrnoError(env, "bpf_object__open_file", err, WithLog(path, log));
  }
  int rc = bpf_object__load(obj);
  if (rc < 0) {
    int err = ErrOf(rc);
    bpf_object__close(obj);
    throw ErrnoError(env, "bpf_object__load", err, WithLog(path, log));
  }
  auto* cls = static_cast<Napi::FunctionReference*>(info.Data());
  try {
    return cls->New({Napi::External<bpf_object>::New(env, obj)});
  } catch (...) {
    bpf_object__close(obj);
    throw;
  }
}

// ---------------------------------------------------------------------------
// Fds and paths.

Napi::Value BpfObjPin(const Napi::CallbackInfo& info) {
  static const char* usage = "bpfObjPin(fd: number, path: string)";
  int fd = ArgFd(info, 0, usage);
  std::string path = ArgString(info, 1, usage);
  int rc = bpf_obj_pin(fd, path.c_str());
  if (rc < 0) throw ErrnoError(info.Env(), "bpf_obj_pin", ErrOf(rc), path);
  return info.Env().Undefined();
}

Napi::Value BpfObjGet(const Napi::CallbackInfo& info) {
  std::string path = ArgString(info, 0, "bpfObjGet(path: string)");
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) throw ErrnoError(info.Env(), "bpf_obj_get", ErrOf(fd), path);
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "closeFd(fd: number)");
  if (close(fd) < 0 && errno != EINTR) ThrowErrno(info.Env(), "close");
  return info.Env().Undefined();
}

Napi::Value DupFd(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "dupFd(fd: number)");
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (copy < 0) ThrowErrno(info.Env(), "fcntl", "F_DUPFD_CLOEXEC");
  return Napi::Number::New(info.Env(), copy);
}

// O_NONBLOCK too, so that opening a FIFO by mistake cannot hang the loop.
Napi::Value OpenPath(const Napi::CallbackInfo& info) {
  static const char* usage = "openPath(path: string, directory: boolean)";
  std::string path = ArgString(info, 0, usage);
  bool dir = ArgBool(info, 1, usage);
  int fd = open(path.c_str(),
                O_RDONLY | O_CLOEXEC | O_NONBLOCK | (dir ? O_DIRECTORY : 0));
  if (fd < 0) ThrowErrno(info.Env(), "open", path);
  return Napi::Number::New(info.Env(), fd);
}

// ---------------------------------------------------------------------------
// Attaching.

Napi::Value BpfLinkCreate(const Napi::CallbackInfo& info) {
  static const char* usage =
      "bpfLinkCreate(progFd: number, targetFd: number, attachType: number)";
  int prog = ArgFd(info, 0, usage);
  int target = ArgFd(info, 1, usage);
  uint32_t type = ArgU32(info, 2, usage);
  int fd = bpf_link_create(prog, target, static_cast<bpf_attach_type>(type),
                           nullptr);
  if (fd < 0) throw ErrnoError(info.Env(), "bpf_link_create", ErrOf(fd));
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value BpfLinkDetach(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "bpfLinkDetach(linkFd: number)");
  int rc = bpf_link_detach(fd);
  if (rc < 0) throw ErrnoError(info.Env(), "bpf_link_detach", ErrOf(rc));
  return info.Env().Undefined();
}

Napi::Value BpfProgAttach(const Napi::CallbackInfo& info) {
  static const char* usage =
      "bpfProgAttach(progFd: number, targetFd: number, attachType: number, "
      "flags: number)";
  int prog = ArgFd(info, 0, usage);
  int target = ArgFd(info, 1, usage);
  uint32_t type = ArgU32(info, 2, usage);
  uint32_t flags = ArgU32(info, 3, usage);
  int rc = bpf_prog_attach(prog, target, static_cast<bpf_attach_type>(type),
                           flags);
  if (rc < 0) throw ErrnoError(info.Env(), "bpf_prog_attach", ErrOf(rc));
  return info.Env().Undefined();
}

Napi::Value BpfProgDetach2(const Napi::CallbackInfo& info) {
  static const char* usage =
      "bpfProgDetach2(progFd: number, targetFd: number, attachType: number)";
  int prog = ArgFd(info, 0, usage);
  int target = ArgFd(info, 1, usage);
  uint32_t type = ArgU32(info, 2, usage);
  int rc = bpf_prog_detach2(prog, target, static_cast<bpf_attach_type>(type));
  if (rc < 0) throw ErrnoError(info.Env(), "bpf_prog_detach2", ErrOf(rc));
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------
// Maps. The kernel reads key_size bytes from the key pointer and writes the
// whole value to the value pointer, so every operation first asks the map
// its sizes and refuses a Buffer of any other length (EINVAL) rather than let
// the kernel read or write past it.

bool IsPerCpu(uint32_t type) {
  return type == BPF_MAP_TYPE_PERCPU_HASH ||
         type == BPF_MAP_TYPE_PERCPU_ARRAY ||
         type == BPF_MAP_TYPE_LRU_PERCPU_HASH ||
         type == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

bpf_map_info MapInfoOf(Napi::Env env, int fd, const char* syscall) {
  bpf_map_info info{};
  uint32_t len = sizeof info;
  int rc = bpf_obj_get_info_by_fd(fd, &info, &len);
  if (rc < 0) throw ErrnoError(env, syscall, ErrOf(rc));
  return info;
}

size_t ValueSizeOf(Napi::Env env, const bpf_map_info& m) {
  if (!IsPerCpu(m.type)) return m.value_size;
  int cpus = libbpf_num_possible_cpus();
  if (cpus < 0) throw ErrnoError(env, "libbpf_num_possible_cpus", -cpus);
  return ((m.value_size + 7) / 8 * 8) * static_cast<size_t>(cpus);
}

void CheckSize(Napi::Env env, int fd, const bpf_map_info& m,
               const char* syscall, const char* what, size_t got,
               size_t want) {
  if (got == want) return;
  RequireKind(env, fd, "bpf-map", "BPF map", syscall);
  std::string name(m.name, strnlen(m.name, sizeof m.name));
  std::string extra;
  if (std::strcmp(what, "value") == 0 && IsPerCpu(m.type))
    extra = " (per-CPU: round_up(value_size " + std::to_string(m.value_size) +
            ", 8) x possibleCpus())";
  throw ErrnoError(env, syscall, EINVAL,
                   std::string(what) + " is " + std::to_string(got) +
                       " bytes but map '" + name + "' (fd " +
                       std::to_string(fd) + ") needs " + std::to_string(want) +
                       extra);
}

Napi::Value MapUpdate(const Napi::CallbackInfo& info) {
  static const char* usage =
      "mapUpdate(fd: number, key: Buffer, value: Buffer, flags: number)";
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, usage);
  size_t klen, vlen;
  const uint8_t* key = ArgBuffer(info, 1, usage, &klen);
  const uint8_t* value = ArgBuffer(info, 2, usage, &vlen);
  uint32_t flags = ArgU32(info, 3, usage);
  const char* sys = "bpf_map_update_elem";
  bpf_map_info m = MapInfoOf(env, fd, sys);
  CheckSize(env, fd, m, sys, "key", klen, m.key_size);
  CheckSize(env, fd, m, sys, "value", vlen, ValueSizeOf(env, m));
  int rc = bpf_map_update_elem(fd, key, value, flags);
  if (rc < 0) throw ErrnoError(env, sys, ErrOf(rc));
  return env.Undefined();
}

Napi::Value MapLookup(const Napi::CallbackInfo& info) {
  static const char* usage =
      "mapLookup(fd: number, key: Buffer, valueSize: number)";
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, usage);
  size_t klen;
  const uint8_t* key = ArgBuffer(info, 1, usage, &klen);
  uint32_t vsize = ArgU32(info, 2, usage);
  if (vsize == 0) ThrowUsage(env, usage);
  const char* sys = "bpf_map_lookup_elem";
  bpf_map_info m = MapInfoOf(env, fd, sys);
  CheckSize(env, fd, m, sys, "key", klen, m.key_size);
  CheckSize(env, fd, m, sys, "value", vsize, ValueSizeOf(env, m));
  auto value = Napi::Buffer<uint8_t>::New(env, vsize);
  int rc = bpf_map_lookup_elem(fd, key, value.Data());
  if (rc < 0) {
    int err = ErrOf(rc);
    if (err == ENOENT) return env.Null();
    throw ErrnoError(env, sys, err);
  }
  return value;
}

Napi::Value MapDelete(const Napi::CallbackInfo& info) {
  static const char* usage = "mapDelete(fd: number, key: Buffer)";
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, usage);
  size_t klen;
  const uint8_t* key = ArgBuffer(info, 1, usage, &klen);
  const char* sys = "bpf_map_delete_elem";
  bpf_map_info m = MapInfoOf(env, fd, sys);
  CheckSize(env, fd, m, sys, "key", klen, m.key_size);
  int rc = bpf_map_delete_elem(fd, key);
  if (rc < 0) {
    int err = ErrOf(rc);
    if (err == ENOENT) return Napi::Boolean::New(env, false);
    throw ErrnoError(env, sys, err);
  }
  return Napi::Boolean::New(env, true);
}

Napi::Value MapNextKey(const Napi::CallbackInfo& info) {
  static const char* usage =
      "mapNextKey(fd: number, key: Buffer | null, keySize: number)";
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, usage);
  const uint8_t* key = nullptr;
  size_t klen = 0;
  if (info.Length() < 2) ThrowUsage(env, usage);
  if (!info[1].IsNull()) key = ArgBuffer(info, 1, usage, &klen);
  uint32_t ksize = ArgU32(info, 2, usage);
  if (ksize == 0) ThrowUsage(env, usage);
  const char* sys = "bpf_map_get_next_key";
  bpf_map_info m = MapInfoOf(env, fd, sys);
  CheckSize(env, fd, m, sys, "keySize", ksize, m.key_size);
  if (key != nullptr) CheckSize(env, fd, m, sys, "key", klen, m.key_size);
  auto next = Napi::Buffer<uint8_t>::New(env, ksize);
  int rc = bpf_map_get_next_key(fd, key, next.Data());
  if (rc < 0) {
    int err = ErrOf(rc);
    if (err == ENOENT) return env.Null();
    throw ErrnoError(env, sys, err);
  }
  return next;
}

Napi::Value PossibleCpus(const Napi::CallbackInfo& info) {
  int n = libbpf_num_possible_cpus();
  if (n < 0) throw ErrnoError(info.Env(), "libbpf_num_possible_cpus", -n);
  return Napi::Number::New(info.Env(), n);
}

// ---------------------------------------------------------------------------
// Object info.

std::string Name16(const char* s, size_t max) {
  return std::string(s, strnlen(s, max));
}

Napi::Value MapInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "mapInfo(fd: number)");
  RequireKind(env, fd, "bpf-map", "BPF map", "bpf_obj_get_info_by_fd");
  bpf_map_info m = MapInfoOf(env, fd, "bpf_obj_get_info_by_fd");
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", m.id);
  o.Set("name", Name16(m.name, sizeof m.name));
  o.Set("type", m.type);
  o.Set("keySize", m.key_size);
  o.Set("valueSize", m.value_size);
  o.Set("maxEntries", m.max_entries);
  return o;
}

Napi::Value ProgInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "progInfo(fd: number)");
  RequireKind(env, fd, "bpf-prog", "BPF program", "bpf_obj_get_info_by_fd");
  bpf_prog_info p{};
  uint32_t len = sizeof p;
  int rc = bpf_obj_get_info_by_fd(fd, &p, &len);
  if (rc < 0) throw ErrnoError(env, "bpf_obj_get_info_by_fd", ErrOf(rc));
  char tag[2 * BPF_TAG_SIZE + 1];
  for (int i = 0; i < BPF_TAG_SIZE; i++)
    std::snprintf(tag + 2 * i, 3, "%02x", p.tag[i]);
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", p.id);
  o.Set("name", Name16(p.name, sizeof p.name));
  o.Set("type", p.type);
  o.Set("tag", tag);
  return o;
}

Napi::Value LinkInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "linkInfo(fd: number)");
  RequireKind(env, fd, "bpf-link", "BPF link", "bpf_obj_get_info_by_fd");
  bpf_link_info l{};
  uint32_t len = sizeof l;
  int rc = bpf_obj_get_info_by_fd(fd, &l, &len);
  if (rc < 0) throw ErrnoError(env, "bpf_obj_get_info_by_fd", ErrOf(rc));
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", l.id);
  o.Set("progId", l.prog_id);
  o.Set("type", l.type);
  return o;
}

// ---------------------------------------------------------------------------
// Feature probes: 1 supported, 0 (or EOPNOTSUPP from libbpf) not; any other
// failure is an error.

Napi::Value ProbeResult(Napi::Env env, int rc, const char* fn,
                        const LogCapture& log) {
  if (rc == 1) return Napi::Boolean::New(env, true);
  if (rc == 0 || rc == -EOPNOTSUPP) return Napi::Boolean::New(env, false);
  throw ErrnoError(env, fn, rc < 0 ? -rc : EINVAL, WithLog("", log));
}

Napi::Value ProbeProgType(const Napi::CallbackInfo& info) {
  uint32_t type = ArgU32(info, 0, "probeProgType(type: number)");
  LogCapture log;
  int rc = libbpf_probe_bpf_prog_type(static_cast<bpf_prog_type>(type),
                                      nullptr);
  return ProbeResult(info.Env(), rc, "libbpf_probe_bpf_prog_type", log);
}

Napi::Value ProbeMapType(const Napi::CallbackInfo& info) {
  uint32_t type = ArgU32(info, 0, "probeMapType(type: number)");
  LogCapture log;
  int rc = libbpf_probe_bpf_map_type(static_cast<bpf_map_type>(type), nullptr);
  return ProbeResult(info.Env(), rc, "libbpf_probe_bpf_map_type", log);
}

// libbpf 1.1 decides "not allowed for this program type" by the verifier
// saying "unknown func"; kernels since 6.x say "program of this type cannot
// use helper" instead, so libbpf answers yes to every known helper. When it
// does, load `call helper; r0 = 0; exit` ourselves and believe the verifier
// if it names the helper as refused. Any other outcome (loaded, or refused
// for an argument) means the helper itself is allowed.
bool HelperRefused(uint32_t type, uint32_t helper) {
  bpf_insn insns[3] = {};
  insns[0].code = BPF_JMP | BPF_CALL;
  insns[0].imm = static_cast<int32_t>(helper);
  insns[1].code = BPF_ALU64 | BPF_MOV | BPF_K;  // r0 = 0
  insns[2].code = BPF_JMP | BPF_EXIT;
  std::string log(64 * 1024, '\0');
  LIBBPF_OPTS(bpf_prog_load_opts, opts);
  opts.log_buf = log.data();
  opts.log_size = static_cast<uint32_t>(log.size());
  opts.log_level = 1;
  switch (type) {  // the attach types libbpf's own probe uses
    case BPF_PROG_TYPE_CGROUP_SOCK_ADDR:
      opts.expected_attach_type = BPF_CGROUP_INET4_CONNECT;
      break;
    case BPF_PROG_TYPE_CGROUP_SOCKOPT:
      opts.expected_attach_type = BPF_CGROUP_GETSOCKOPT;
      break;
    case BPF_PROG_TYPE_SK_LOOKUP:
      opts.expected_attach_type = BPF_SK_LOOKUP;
      break;
    default:
      break;
  }
  int fd = bpf_prog_load(static_cast<bpf_prog_type>(type), nullptr, "GPL",
                         insns, 3, &opts);
  if (fd >= 0) {
    close(fd);
    return false;
  }
  return log.find("cannot use helper") != std::string::npos ||
         log.find("unknown func ") != std::string::npos ||
         log.find("invalid func ") != std::string::npos;
}

Napi::Value ProbeHelper(const Napi::CallbackInfo& info) {
  static const char* usage = "probeHelper(progType: number, helperId: number)";
  uint32_t type = ArgU32(info, 0, usage);
  uint32_t helper = ArgU32(info, 1, usage);
  LogCapture log;
  int rc = libbpf_probe_bpf_helper(static_cast<bpf_prog_type>(type),
                                   static_cast<bpf_func_id>(helper), nullptr);
  if (rc == 1 && HelperRefused(type, helper)) rc = 0;
  return ProbeResult(info.Env(), rc, "libbpf_probe_bpf_helper", log);
}

// ---------------------------------------------------------------------------
// Ring buffer: libbpf's consumer over a BPF_MAP_TYPE_RINGBUF map, its epoll fd
// watched by a uv_poll_t on Node's loop. Records are copied into Buffers and
// handed to JavaScript synchronously, during ring_buffer__consume.

// Returned from the sample callback to make libbpf stop early. The record
// that returned it has already been consumed.
constexpr int kStop = -ECANCELED;
// At most this many records per consume, so that a busy producer cannot keep
// the loop in one callback; the epoll fd is level-triggered, so the rest
// comes on the next loop iteration.
constexpr int kMaxPerConsume = 4096;

class RingBuffer : public Napi::ObjectWrap<RingBuffer> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "RingBuffer",
                       {
                           InstanceMethod("start", &RingBuffer::Start),
                           InstanceMethod("stop", &RingBuffer::Stop),
                           InstanceMethod("close", &RingBuffer::Close),
                           InstanceMethod("consume", &RingBuffer::Consume),
                       });
  }

  explicit RingBuffer(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<RingBuffer>(info) {
    static const char* usage =
        "new RingBuffer(mapFd: number, onRecord: (data: Buffer) => void)";
    Napi::Env env = info.Env();
    int fd = ArgFd(info, 0, usage);
    if (info.Length() < 2 || !info[1].IsFunction()) ThrowUsage(env, usage);
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok)
      throw Napi::Error::New(env, "RingBuffer: no event loop");
    {
      LogCapture log;
      rb_ = ring_buffer__new(fd, OnSample, this, nullptr);
      if (rb_ == nullptr) {
        int err = errno;
        throw ErrnoError(env, "ring_buffer__new", err,
                         WithLog("map fd " + std::to_string(fd), log));
      }
    }
    handle_ = new uv_poll_t;
    int rc = uv_poll_init(loop, handle_, ring_buffer__epoll_fd(rb_));
    if (rc < 0) {
      delete handle_;
      handle_ = nullptr;
      ring_buffer__free(rb_);
      rb_ = nullptr;
      throw ErrnoError(env, "uv_poll_init", -rc);
    }
    handle_->data = this;
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
  }

  ~RingBuffer() override { Release(); }

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_) throw Napi::Error::New(env, "RingBuffer is closed");
    int rc = uv_poll_start(handle_, UV_READABLE, OnPoll);
    if (rc < 0) throw ErrnoError(env, "uv_poll_start", -rc);
    // While polling, only libuv points at this object: keep it alive.
    if (!active_) {
      Ref();
      active_ = true;
    }
    return env.Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    StopPolling();
    return info.Env().Undefined();
  }

  // Idempotent. Called from onRecord, it takes effect when the current
  // consume returns (no further records are delivered).
  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (!closed_) {
      closed_ = true;
      StopPolling();
      callback_.Reset();
      if (!consuming_) Release();
    }
    return info.Env().Undefined();
  }

  // consume(): number — delivers what is there now, returns how many.
  Napi::Value Consume(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_) throw Napi::Error::New(env, "RingBuffer is closed");
    return Napi::Number::New(env, Drain(env));
  }

  void StopPolling() {
    if (handle_ != nullptr) uv_poll_stop(handle_);
    if (active_) {
      active_ = false;
      Unref();
    }
  }

  void Release() {
    if (handle_ != nullptr) {
      handle_->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(handle_),
               [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
      handle_ = nullptr;
    }
    if (rb_ != nullptr) {
      ring_buffer__free(rb_);
      rb_ = nullptr;
    }
  }

  // One ring_buffer__consume. Throws what onRecord threw (the records before
  // it, and it, are consumed).
  int Drain(Napi::Env env) {
    if (rb_ == nullptr || consuming_) return 0;  // no re-entry from onRecord
    consuming_ = true;
    delivered_ = 0;
    Ref();  // not collectable while libbpf is walking the ring
    int rc = ring_buffer__consume(rb_);
    Unref();
    consuming_ = false;
    if (closed_) Release();
    if (!pending_.IsEmpty()) {
      Napi::Value e = pending_.Value();
      pending_.Reset();
      throw Napi::Error(env, e);
    }
    if (rc < 0 && rc != kStop && !closed_)
      throw ErrnoError(env, "ring_buffer__consume", -rc);
    return delivered_;
  }

  static int OnSample(void* ctx, void* data, size_t size) {
    auto* self = static_cast<RingBuffer*>(ctx);
    if (self->closed_ || self->callback_.IsEmpty()) return kStop;
    Napi::Env env = self->callback_.Env();
    Napi::HandleScope scope(env);
    try {
      Napi::Buffer<uint8_t> record =
          Napi::Buffer<uint8_t>::Copy(env, static_cast<uint8_t*>(data), size);
      self->delivered_++;
      // MakeCallback, as for any libuv-driven callback: nextTicks and
      // microtasks run after each record when called from the loop.
      self->callback_.MakeCallback(env.Global(), {record});
    } catch (const Napi::Error& e) {
      self->pending_ = Napi::Persistent(Napi::Value(env, e.Value()));
      return kStop;
    } catch (...) {
      self->pending_ = Napi::Persistent(Napi::Value(
          env, Napi::Error::New(env, "RingBuffer: onRecord failed").Value()));
      return kStop;
    }
    return self->delivered_ >= kMaxPerConsume ? kStop : 0;
  }

  static void OnPoll(uv_poll_t* handle, int status, int /*events*/) {
    auto* self = static_cast<RingBuffer*>(handle->data);
    if (self == nullptr || self->closed_) return;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    try {
      if (status < 0) {
        self->StopPolling();
        throw ErrnoError(env, "uv_poll", -status);
      }
      self->Drain(env);
    } catch (const Napi::Error& e) {
      napi_fatal_exception(env, e.Value());
    }
  }

  ring_buffer* rb_ = nullptr;
  uv_poll_t* handle_ = nullptr;  // freed in uv_close's callback
  Napi::FunctionReference callback_;
  Napi::Reference<Napi::Value> pending_;  // what onRecord threw
  bool active_ = false;
  bool consuming_ = false;
  bool closed_ = false;
  int delivered_ = 0;
};

}  // namespace

void InitEbpf(Napi::Env env, Napi::Object exports) {
  libbpf_set_print(PrintFn);

  Napi::Function object_cls = BpfObject::Define(env);
  auto* object_ref = new Napi::FunctionReference(Napi::Persistent(object_cls));
  Napi::Function open =
      Napi::Function::New(env, BpfObjectOpen, "bpfObjectOpen", object_ref);
  open.AddFinalizer(
      [](Napi::Env, Napi::FunctionReference* ref) { delete ref; }, object_ref);
  exports.Set("bpfObjectOpen", open);

  auto fn = [&](const char* name, Napi::Value (*f)(const Napi::CallbackInfo&)) {
    exports.Set(name, Napi::Function::New(env, f, name));
  };
  fn("bpfObjPin", BpfObjPin);
  fn("bpfObjGet", BpfObjGet);
  fn("closeFd", CloseFd);
  fn("dupFd", DupFd);
  fn("openPath", OpenPath);
  fn("bpfLinkCreate", BpfLinkCreate);
  fn("bpfLinkDetach", BpfLinkDetach);
  fn("bpfProgAttach", BpfProgAttach);
  fn("bpfProgDetach2", BpfProgDetach2);
  fn("mapUpdate", MapUpdate);
  fn("mapLookup", MapLookup);
  fn("mapDelete", MapDelete);
  fn("mapNextKey", MapNextKey);
  fn("possibleCpus", PossibleCpus);
  fn("mapInfo", MapInfo);
  fn("progInfo", ProgInfo);
  fn("linkInfo", LinkInfo);
  fn("probeProgType", ProbeProgType);
  fn("probeHelper", ProbeHelper);
  fn("probeMapType", ProbeMapType);
  exports.Set("RingBuffer", RingBuffer::Define(env));

  // The numbers come from linux/bpf.h, so TypeScript never restates them.
  Napi::Object c = exports.Get("constants").As<Napi::Object>();
#define SKEIN_CONST(name) c.Set(#name, Napi::Number::New(env, name))
  SKEIN_CONST(BPF_PROG_TYPE_SOCKET_FILTER);
  SKEIN_CONST(BPF_PROG_TYPE_SCHED_CLS);
  SKEIN_CONST(BPF_PROG_TYPE_SOCK_OPS);
  SKEIN_CONST(BPF_PROG_TYPE_SK_MSG);
  SKEIN_CONST(BPF_PROG_TYPE_CGROUP_SOCK_ADDR);
  SKEIN_CONST(BPF_PROG_TYPE_CGROUP_SOCK);
  SKEIN_CONST(BPF_PROG_TYPE_CGROUP_SKB);
  SKEIN_CONST(BPF_PROG_TYPE_SK_LOOKUP);
  SKEIN_CONST(BPF_CGROUP_INET4_CONNECT);
  SKEIN_CONST(BPF_CGROUP_INET6_CONNECT);
  SKEIN_CONST(BPF_CGROUP_SOCK_OPS);
  SKEIN_CONST(BPF_SK_MSG_VERDICT);
  SKEIN_CONST(BPF_CGROUP_INET4_GETPEERNAME);
  SKEIN_CONST(BPF_CGROUP_INET6_GETPEERNAME);
  SKEIN_CONST(BPF_CGROUP_INET4_GETSOCKNAME);
  SKEIN_CONST(BPF_CGROUP_INET_SOCK_RELEASE);
  SKEIN_CONST(BPF_SK_LOOKUP);
  SKEIN_CONST(BPF_TRACE_ITER);
  SKEIN_CONST(BPF_MAP_TYPE_HASH);
  SKEIN_CONST(BPF_MAP_TYPE_ARRAY);
  SKEIN_CONST(BPF_MAP_TYPE_LRU_HASH);
  SKEIN_CONST(BPF_MAP_TYPE_SOCKHASH);
  SKEIN_CONST(BPF_MAP_TYPE_SOCKMAP);
  SKEIN_CONST(BPF_MAP_TYPE_RINGBUF);
  SKEIN_CONST(BPF_MAP_TYPE_PERCPU_ARRAY);
  SKEIN_CONST(BPF_MAP_TYPE_PERCPU_HASH);
  SKEIN_CONST(BPF_MAP_TYPE_LRU_PERCPU_HASH);
  SKEIN_CONST(BPF_FUNC_get_netns_cookie);
  SKEIN_CONST(BPF_FUNC_get_socket_cookie);
  SKEIN_CONST(BPF_FUNC_setsockopt);
  SKEIN_CONST(BPF_FUNC_msg_redirect_hash);
  SKEIN_CONST(BPF_FUNC_sock_hash_update);
  SKEIN_CONST(BPF_FUNC_ringbuf_output);
  SKEIN_CONST(BPF_FUNC_ringbuf_reserve);
  SKEIN_CONST(BPF_FUNC_sk_assign);
  SKEIN_CONST(BPF_ANY);
  SKEIN_CONST(BPF_NOEXIST);
  SKEIN_CONST(BPF_EXIST);
  SKEIN_CONST(BPF_F_ALLOW_MULTI);
#undef SKEIN_CONST
}

}  // namespace skein
