// SPDX-License-Identifier: Apache-2.0
#include "bpffs.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>

#include "errors.h"

namespace skein {

namespace {

// Closes the fd (and with it the flock) on every path out.
class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() { close(fd_); }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;

 private:
  int fd_;
};

}  // namespace

Napi::Value StatfsType(const Napi::CallbackInfo& info) {
  std::string path = ArgString(info, 0, "statfsType(path: string)");
  struct statfs st {};
  if (statfs(path.c_str(), &st) < 0) ThrowErrno(info.Env(), "statfs", path);
  // f_type is a signed long holding a 32-bit magic; keep it unsigned.
  uint32_t magic = static_cast<uint32_t>(st.f_type);
  return Napi::Number::New(info.Env(), magic);
}

Napi::Value MountBpffs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "mountBpffs(path: string)");
  // The lock is on the directory as opened now: a racing daemon that opened
  // it too waits here, then finds our bpffs by path and leaves it alone.
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) ThrowErrno(env, "open", path);
  FdGuard guard(fd);
  int r;
  do {
    r = flock(fd, LOCK_EX);
  } while (r < 0 && errno == EINTR);
  if (r < 0) ThrowErrno(env, "flock", path);
  struct statfs st {};
  if (statfs(path.c_str(), &st) < 0) ThrowErrno(env, "statfs", path);
  if (static_cast<uint32_t>(st.f_type) == BPF_FS_MAGIC)
    return Napi::Boolean::New(env, false);
  if (mount("bpffs", path.c_str(), "bpf", MS_NOSUID | MS_NODEV | MS_NOEXEC,
            "mode=0700") < 0)
    ThrowErrno(env, "mount", path);
  return Napi::Boolean::New(env, true);
}

void InitBpffs(Napi::Env env, Napi::Object exports) {
  exports.Set("statfsType", Napi::Function::New(env, StatfsType, "statfsType"));
  exports.Set("mountBpffs", Napi::Function::New(env, MountBpffs, "mountBpffs"));
  // From linux/magic.h, so TypeScript never restates them.
  Napi::Object c = exports.Get("constants").As<Napi::Object>();
  c.Set("BPF_FS_MAGIC", Napi::Number::New(env, BPF_FS_MAGIC));
  c.Set("SYSFS_MAGIC", Napi::Number::New(env, SYSFS_MAGIC));
}

}  // namespace skein
