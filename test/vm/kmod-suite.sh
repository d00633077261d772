# SPDX-License-Identifier: Apache-2.0
# Runs inside the VM (test/vm/kmod.test.ts boots it): loads kmod/, runs the C
# cases of kmod/test/hbone_vm_test.c plain and over kTLS, checks that a live
# tunnel pins the module and that it unloads cleanly. One "ok - NAME" or
# "not ok - NAME: why" line per check; the host makes a test of each.
set -u
ok() { echo "ok - $1"; }
nok() { echo "not ok - $1: $2"; }
ulps=/proc/sys/net/ipv4/tcp_available_ulp

if insmod /root/skein_hbone.ko; then ok load; else nok load "insmod failed"; fi
if grep -qw skein_hbone $ulps; then ok ulp-registered; else nok ulp-registered "$(cat $ulps)"; fi

# What the daemon's probe reads (ztunnel-compat/src/accel/kmod.ts), as seen
# from a network namespace of its own, as a pod's: tcp_available_ulp is not
# there, the module's sysfs state and tls's per-netns stats are.
probe=$(unshare -n sh -c 'cat /sys/module/skein_hbone/initstate; [ -e /proc/net/tls_stat ] && echo tls; [ -e /proc/sys/net/ipv4/tcp_available_ulp ] && echo ulps' 2>&1 | tr '\n' ' ')
if [ "$probe" = "live tls " ]; then ok probe-facts; else nok probe-facts "in a new netns: $probe"; fi

for c in roundtrip window ping recv_window half_close fallback garbage refusals; do
  for m in plain tls; do
    /root/hbone_vm_test "$c" "$m" || true
  done
done
/root/hbone_vm_test tls_control tls || true

# Every socket the cases opened is closed: the module holds no reference.
refs=$(cat /sys/module/skein_hbone/refcnt)
if [ "$refs" = 0 ]; then ok no-leaked-references; else nok no-leaked-references "refcnt $refs"; fi

# A live tunnel pins the module: rmmod must be refused, then work once it is gone.
/root/hbone_vm_test hold tls > /tmp/hold.out 2>&1 &
pid=$!
i=0
while ! grep -q held /tmp/hold.out && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if ! grep -q held /tmp/hold.out; then
  nok unload-refused-while-live "no live tunnel: $(cat /tmp/hold.out)"
elif rmmod skein_hbone 2>/dev/null; then
  nok unload-refused-while-live "rmmod succeeded with a live tunnel"
  insmod /root/skein_hbone.ko
else
  ok unload-refused-while-live
fi
kill "$pid"; wait "$pid" 2>/dev/null
if rmmod skein_hbone; then ok unload; else nok unload "rmmod failed: refcnt $(cat /sys/module/skein_hbone/refcnt)"; fi
if grep -qw skein_hbone $ulps; then nok ulp-unregistered "$(cat $ulps)"; else ok ulp-unregistered; fi

if dmesg | grep -qE 'WARNING:|BUG:|Oops|Call Trace|refcount_t'; then nok dmesg-clean "see the kernel log below"; else ok dmesg-clean; fi
echo '--- dmesg since /init'
dmesg | sed -n '/Run \/init/,$p' | tail -40
