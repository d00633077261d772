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

if rmmod skein_hbone; then ok unload; else nok unload "rmmod failed: refcnt $(cat /sys/module/skein_hbone/refcnt)"; fi
if grep -qw skein_hbone $ulps; then nok ulp-unregistered "$(cat $ulps)"; else ok ulp-unregistered; fi

if dmesg | grep -qE 'WARNING:|BUG:|Oops|Call Trace|refcount_t'; then nok dmesg-clean "see the kernel log below"; else ok dmesg-clean; fi
echo '--- dmesg since /init'
dmesg | sed -n '/Run \/init/,$p' | tail -40
