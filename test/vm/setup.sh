#!/usr/bin/env bash
# The VM lab's image (test/vm/vm.ts boots it): Debian's kernel with the
# headers to build kmod/ against, busybox, our module and the C test programs
# that run inside the VM. Called by test/setup.sh; idempotent and stamped like
# it: a second run finds everything in place and does nothing.
#
# Everything comes from Debian's archive through apt-get download, nothing
# from anywhere else. The kernel is the one bookworm's linux-image-amd64
# points at today; its headers must be the same version.
set -euo pipefail
root=$(cd -- "$(dirname -- "$0")/../.." && pwd)
vm="$root/.skein/vm"
mkdir -p "$vm"
say() { printf 'setup(vm): %s\n' "$*" >&2; }

# 1. Which kernel: the ABI the metapackage depends on, e.g. 6.1.0-57-amd64.
#    Once fetched, the stamp pins it; delete .skein/vm to move to a newer one.
if [ -f "$vm/kernel.stamp" ] && [ -f "$vm/root/bin/busybox" ]; then
  read -r release version < "$vm/kernel.stamp"
else
  pick() { apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: linux-image-\(6\.1\.0-[0-9]*-amd64\)$/\1/p' | head -1; }
  release=$(pick)
  if [ -z "$release" ]; then apt-get update -qq; release=$(pick); fi
  [ -n "$release" ] || { say "apt-cache finds no linux-image-6.1.0-*-amd64 behind linux-image-amd64"; exit 1; }
  version=$(apt-cache policy "linux-image-$release" | sed -n 's/^ *Candidate: //p')
  abi=${release%-amd64}
  kbuild=linux-kbuild-${abi%.0-*}
  pkgs=("linux-image-$release" "linux-headers-$release" "linux-headers-$abi-common" "$kbuild" busybox-static)
  for p in "${pkgs[@]:1:3}"; do
    v=$(apt-cache policy "$p" | sed -n 's/^ *Candidate: //p')
    [ "$v" = "$version" ] || { say "$p is at '$v', not $version: no matching headers for linux-image-$release"; exit 1; }
  done
  say "fetching Debian's kernel $release ($version), its headers and busybox-static"
  rm -rf "$vm/debs" "$vm/root"
  mkdir -p "$vm/debs" "$vm/root"
  # apt's sandbox user cannot write into root's tree; download as root, quietly.
  (cd "$vm/debs" && apt-get download -q -o APT::Sandbox::User=root "${pkgs[@]}" >/dev/null)
  for d in "$vm/debs"/*.deb; do dpkg-deb -x "$d" "$vm/root"; done
  rm -rf "$vm/debs"
  # The arch headers include the common ones by absolute /usr/src path; point
  # that at our copy so nothing is installed on the host.
  sed -i "s#^include /usr/src/#include $vm/root/usr/src/#" "$vm/root/usr/src/linux-headers-$release/Makefile"
  echo "$release $version" > "$vm/kernel.stamp"
fi
headers="$vm/root/usr/src/linux-headers-$release"

# 2. qemu (software emulation works; /dev/kvm is used when present).
if ! command -v qemu-system-x86_64 >/dev/null; then
  [ "$(id -u)" -eq 0 ] || { say "need root to install qemu-system-x86"; exit 1; }
  say "installing qemu-system-x86"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null
fi

# 3. kmod/, built with Kbuild against those headers in a copy under .skein
#    (Kbuild writes its objects beside the sources). The kernel was built with
#    Debian's gcc-12, the compiler build-essential installs here.
kmod_sum=$( (cat "$root"/kmod/*.c "$root"/kmod/*.h "$root"/kmod/Kbuild; echo "$release") | sha256sum | cut -d' ' -f1)
if [ ! -f "$vm/kmod-build/skein_hbone.ko" ] || [ "$(cat "$vm/kmod.stamp" 2>/dev/null)" != "$kmod_sum" ]; then
  say "building kmod/ against $release"
  rm -rf "$vm/kmod-build"
  mkdir -p "$vm/kmod-build"
  cp "$root"/kmod/*.c "$root"/kmod/*.h "$root"/kmod/Kbuild "$vm/kmod-build/"
  log="$vm/kmod-build.log"
  if ! make -C "$headers" M="$vm/kmod-build" modules >"$log" 2>&1; then
    cat "$log" >&2
    say "building kmod/ failed (log above, also in $log)"
    exit 1
  fi
  echo "$kmod_sum" > "$vm/kmod.stamp"
fi

# 4. The programs the VM tests run: static (OpenSSL too), so they run from
#    the initramfs without a libc.
tests_sum=$(cat "$root"/kmod/test/*.c "$root"/kmod/test/*.h "$root"/kmod/skein_hbone.h | sha256sum | cut -d" " -f1)
if [ "$(cat "$vm/tests.stamp" 2>/dev/null)" != "$tests_sum" ]; then
  say "building the VM test programs"
  rm -rf "$vm/bin"
  mkdir -p "$vm/bin"
  log="$vm/tests-build.log"
  : > "$log"
  for src in "$root"/kmod/test/*.c; do
    [ -e "$src" ] || continue
    # The linker's notes on static glibc (getaddrinfo, dlopen) go to the log:
    # the programs use neither.
    if ! gcc -static -O2 -Wall -Wextra -Werror -I"$root/kmod" -o "$vm/bin/$(basename "$src" .c)" "$src" -lssl -lcrypto -lpthread >>"$log" 2>&1; then
      cat "$log" >&2
      say "building $(basename "$src") failed (log above, also in $log)"
      exit 1
    fi
  done
  echo "$tests_sum" > "$vm/tests.stamp"
fi
