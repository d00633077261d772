// SPDX-License-Identifier: Apache-2.0
// The bpf filesystem pins live in. A fresh machine often has /sys/fs/bpf
// (sysfs provides the empty directory) but nothing mounted there; Node has
// no statfs magic and no mount(2), so the daemon asks here, as Cilium's agent
// does before it pins (statfs BPF_FS_MAGIC, else mount "bpf" there).
#pragma once

#include <napi.h>

namespace skein {

// statfsType(path: string): number
// The f_type of the filesystem `path` lies on (statfs(2)); compare with
// constants.BPF_FS_MAGIC / SYSFS_MAGIC. ENOENT when `path` does not exist.
Napi::Value StatfsType(const Napi::CallbackInfo& info);

// mountBpffs(path: string): boolean
// Mounts a bpf filesystem on the directory `path` (nosuid, nodev, noexec,
// mode 0700, as systemd mounts /sys/fs/bpf) unless one is there already.
// The check and the mount happen under an exclusive flock on `path`, so two
// daemons starting at once mount one filesystem, not two stacked ones (each
// bpffs mount is its own instance: a second would hide the first's pins).
// Returns true when it mounted, false when bpffs was there already.
Napi::Value MountBpffs(const Napi::CallbackInfo& info);

void InitBpffs(Napi::Env env, Napi::Object exports);

}  // namespace skein
