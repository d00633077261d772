// SPDX-License-Identifier: Apache-2.0
#include "netns.h"

#include <bpf/bpf.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "errors.h"

namespace skein {

namespace {

// Enters a namespace on the current thread and always returns to the one it
// came from. Node's main thread runs everything else, so a failed return is
// not survivable: every later socket would land in a pod. We abort instead.
class NetnsSwitch {
 public:
  NetnsSwitch(Napi::Env env, int target) {
    home_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home_ < 0) ThrowErrno(env, "open", "/proc/thread-self/ns/net");
    if (setns(target, CLONE_NEWNET) < 0) {
      int err = errno;
      close(home_);
      throw ErrnoError(env, "setns", err,
                       err == EINVAL ? "fd is not a network namespace" : "");
    }
  }
  ~NetnsSwitch() {
    if (setns(home_, CLONE_NEWNET) < 0) {
      std::fprintf(stderr, "skein: cannot return to own netns: %s\n",
                   std::strerror(errno));
      std::abort();
    }
    close(home_);
  }
  NetnsSwitch(const NetnsSwitch&) = delete;
  NetnsSwitch& operator=(const NetnsSwitch&) = delete;

 private:
  int home_;
};

}  // namespace

Napi::Value OpenNetns(const Napi::CallbackInfo& info) {
  std::string path = ArgString(info, 0, "openNetns(path: string)");
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) ThrowErrno(info.Env(), "open", path);
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value CreateSocket(const Napi::CallbackInfo& info) {
  static const char* usage =
      "createSocket(family: 4 | 6, kind: 'stream' | 'dgram', netnsFd: number)";
  Napi::Env env = info.Env();
  int family = ArgInt(info, 0, usage);
  std::string kind = ArgString(info, 1, usage);
  int nsfd = ArgInt(info, 2, usage);
  if ((family != 4 && family != 6) || (kind != "stream" && kind != "dgram") ||
      nsfd < -1)
    ThrowUsage(env, usage);

  int domain = family == 4 ? AF_INET : AF_INET6;
  int type = (kind == "stream" ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK |
             SOCK_CLOEXEC;
  int fd;
  int err = 0;
  if (nsfd == -1) {
    fd = socket(domain, type, 0);
    err = errno;
  } else {
    NetnsSwitch in(env, nsfd);
    fd = socket(domain, type, 0);
    err = errno;
  }
  if (fd < 0) throw ErrnoError(env, "socket", err);
  return Napi::Number::New(env, fd);
}

// bpfIterRun(linkFd: number, netnsFd: number): number
// Runs a BPF iterator as seen from another namespace: the iterator fd is
// created there (socket iterators walk the creating task's netns), the
// thread returns home, and the fd is read to its end here. Returns the bytes
// the program printed (ours print none). Kernel iterations are short and
// bounded; nothing here waits on the network.
Napi::Value BpfIterRun(const Napi::CallbackInfo& info) {
  static const char* usage = "bpfIterRun(linkFd: number, netnsFd: number)";
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) ThrowUsage(env, usage);
  int link = info[0].As<Napi::Number>().Int32Value();
  int ns = info[1].As<Napi::Number>().Int32Value();
  if (link < 0 || ns < 0) ThrowUsage(env, usage);
  int iter;
  {
    NetnsSwitch in(env, ns);
    iter = bpf_iter_create(link);
  }
  if (iter < 0) throw ErrnoError(env, "bpf_iter_create", -iter);
  char buf[4096];
  double total = 0;
  for (;;) {
    ssize_t n = read(iter, buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      int err = errno;
      close(iter);
      throw ErrnoError(env, "read", err, "");
    }
    total += static_cast<double>(n);
  }
  close(iter);
  return Napi::Number::New(env, total);
}

// setNetnsSysctl(netnsFd: number, name: string, value: string): void
// Writes /proc/sys/<name> as seen from another namespace: net.* sysctls are
// per netns, and /proc/sys/net resolves to the namespace of the task that
// opens the file, so it is opened while the thread is in `netnsFd`. Only
// names under net/ are accepted.
Napi::Value SetNetnsSysctl(const Napi::CallbackInfo& info) {
  static const char* usage = "setNetnsSysctl(netnsFd: number, name: string, value: string)";
  Napi::Env env = info.Env();
  int ns = ArgInt(info, 0, usage);
  std::string name = ArgString(info, 1, usage);
  std::string value = ArgString(info, 2, usage);
  bool ok = ns >= 0 && name.rfind("net/", 0) == 0 && name.find("..") == std::string::npos && !value.empty();
  for (char c : name) ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '/' || c == '.');
  if (!ok) ThrowUsage(env, usage);
  std::string path = "/proc/sys/" + name;
  int fd;
  {
    NetnsSwitch in(env, ns);
    fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  }
  if (fd < 0) ThrowErrno(env, "open", path);
  ssize_t n = write(fd, value.data(), value.size());
  int err = errno;
  close(fd);
  if (n < 0) throw ErrnoError(env, "write", err, path);
  return env.Undefined();
}

void InitNetns(Napi::Env env, Napi::Object exports) {
  exports.Set("setNetnsSysctl", Napi::Function::New(env, SetNetnsSysctl, "setNetnsSysctl"));
  exports.Set("bpfIterRun", Napi::Function::New(env, BpfIterRun, "bpfIterRun"));
  exports.Set("openNetns", Napi::Function::New(env, OpenNetns, "openNetns"));
  exports.Set("createSocket",
              Napi::Function::New(env, CreateSocket, "createSocket"));
}

}  // namespace skein
