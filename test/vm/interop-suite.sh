# SPDX-License-Identifier: Apache-2.0
# Runs inside the VM after kmod-suite.sh, with the host's root shared
# read-only at /host and $SKEIN_ROOT the project's path there: Skein's
# userspace HBONE server (test/vm/hbone-peer.ts, under the project's Node in
# a chroot) against kmod/test/hbone_interop.c, and Skein's userspace HBONE
# client (test/vm/hbone-client.ts) against kmod/test/hbone_interop_server.c;
# in both the module carries the C side's tunnel over kTLS. Same
# "ok - NAME" lines as kmod-suite.sh.
set -u
ok() { echo "ok - $1"; }
nok() { echo "not ok - $1: $2"; }

# The chroot gets a writable /tmp for sockets and key logs. The project may
# itself live under /tmp (a CI clone does), so it is bound back into place
# over the fresh tmpfs.
# proc last: over 9p the host's empty /proc and /sys mount points can be one
# inode, so the later mount covers both paths; the chroot's Node needs /proc
# (the HBONE engine opens /proc/self/ns/net), nothing there reads /sys.
mount -t sysfs sys /host/sys && mount -t devtmpfs dev /host/dev && mount -t proc proc /host/proc \
  && mkdir -p /project && mount -o bind "/host$SKEIN_ROOT" /project \
  && mount -t tmpfs tmp /host/tmp && mkdir -p "/host$SKEIN_ROOT" && mount -o bind /project "/host$SKEIN_ROOT" \
  || { nok interop/node-server "cannot prepare the chroot"; exit 0; }
insmod /root/skein_hbone.ko || nok interop/node-server "insmod failed"
chroot /host sh -c "cd '$SKEIN_ROOT' && exec test/node test/vm/hbone-peer.ts /tmp/hbone" > /tmp/peer.out 2>&1 &
peer=$!
i=0
while ! grep -q '^ready ' /tmp/peer.out && [ $i -lt 300 ] && kill -0 $peer 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
port=$(sed -n 's/^ready //p' /tmp/peer.out)
if [ -z "$port" ]; then
  nok interop/node-server "the HBONE server did not start: $(cat /tmp/peer.out)"
else
  /root/hbone_interop "$port" /host/tmp/hbone 1048576 || true
fi

# The native HBONE engine (bpf/src/hbone) with the module: the tunnel to the
# same server handed to the module after the CONNECT and paired with the pod
# socket by splice (test/vm/engine-client.ts); then against an HTTP/2 peer
# that sends SETTINGS and PING mid-stream, which the module gives back.
if [ -n "$port" ]; then
  chroot /host sh -c "cd '$SKEIN_ROOT' && exec test/node test/vm/engine-client.ts $port /tmp/hbone 1048576 kmod fallback" > /tmp/engine.out 2>&1
  grep -E '^(not )?ok - ' /tmp/engine.out || nok engine/kmod "$(tail -5 /tmp/engine.out)"
  grep -vE '^(not )?ok - |^bench ' /tmp/engine.out | tail -20
fi

# The other way round: Skein's userspace HBONE client (Node) against a server
# whose tunnel the module carries (it echoes; the client checks every byte).
if [ -n "$port" ]; then
  /root/hbone_interop_server /host/tmp/hbone > /tmp/server.out 2>&1 &
  server=$!
  i=0
  while ! grep -q '^listening ' /tmp/server.out && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  sport=$(sed -n 's/^listening //p' /tmp/server.out)
  if chroot /host sh -c "cd '$SKEIN_ROOT' && exec test/node test/vm/hbone-client.ts $sport /tmp/hbone 1048576" > /tmp/client.out 2>&1; then
    ok interop/node-client-bytes
  else
    nok interop/node-client-bytes "$(tail -5 /tmp/client.out)"
  fi
  i=0
  while kill -0 $server 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  kill $server 2>/dev/null; wait $server 2>/dev/null
  grep -v '^listening ' /tmp/server.out
fi
kill $peer 2>/dev/null; wait $peer 2>/dev/null
echo "--- hbone-peer.ts"; cat /tmp/peer.out
if rmmod skein_hbone; then ok unload-after-interop; else nok unload-after-interop "refcnt $(cat /sys/module/skein_hbone/refcnt)"; fi
if dmesg | grep -qE 'WARNING:|BUG:|Oops|Call Trace|refcount_t'; then nok dmesg-clean-after-interop "see the kernel log"; else ok dmesg-clean-after-interop; fi
