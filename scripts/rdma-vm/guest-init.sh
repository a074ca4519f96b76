#!/bin/sh
# /init of the Soft-RoCE guest (busybox sh, PID 1).
#
# Loads virtio/9p/rxe, mounts the host's root read-only (9p tag "hostroot") and the
# read-write result share (tag "results"), creates the Soft-RoCE device rxe0 on a dummy
# network device, then runs /tmp/rdma-vm/command.sh (written by the host) chrooted into
# the host root and writes its exit status to the share. The host decides pass or fail
# from the marker files left in the share: booted, rxe-ready, exit-code.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

uptime_s() { cut -d' ' -f1 /proc/uptime; }
say() { echo "rdma-vm[guest ${1}s]: $2"; }
stop() { sync; poweroff -f; sleep 5; }
fail() { say "$(uptime_s)" "FAIL: $*"; stop; }

say "$(uptime_s)" "kernel $(uname -r) up"
echo /sbin/modprobe > /proc/sys/kernel/modprobe
for module in virtio_pci 9pnet_virtio 9p crc32_generic rdma_rxe ib_uverbs dummy veth bridge; do
  modprobe "$module" || fail "modprobe $module"
done

mkdir -p /share
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results /share || fail "cannot mount the result share"
repo=$(cat /share/repo-path 2>/dev/null)
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /host ||
  fail "cannot mount the host root over 9p"
# The host root is read-only, so /tmp, /run and /dev/shm get fresh tmpfs mounts. A
# repository that itself lives under /tmp or /run (a CI clone, say) is bound back in.
mkdir -p /host-view
mount -o bind /host /host-view
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t devtmpfs devtmpfs /host/dev
mkdir -p /host/dev/shm /host/dev/pts
mount -t tmpfs tmpfs /host/dev/shm
mount -t tmpfs tmpfs /host/tmp
mount -t tmpfs tmpfs /host/run
case "$repo" in
  /tmp/* | /run/*)
    mkdir -p "/host$repo"
    mount -o bind "/host-view$repo" "/host$repo" || fail "cannot bind the repository $repo"
    ;;
esac
share=/host/tmp/rdma-vm
mkdir -p "$share"
mount -o bind /share "$share" || fail "cannot bind the result share"
echo "$(uname -r)" > "$share/booted"

# Soft-RoCE on a dummy device: rxe loops packets between its own queue pairs, so one
# device serves both nodes of a test. The IPv4 address gives GID index 1 (RoCE v2).
ip link set lo up
# Loading `dummy` usually creates dummy0 already (numdummies=1).
ip link show dummy0 >/dev/null 2>&1 || ip link add dummy0 type dummy || fail "ip link add dummy0"
ip addr add 10.11.12.1/24 dev dummy0
ip link set dummy0 up
rdma link add rxe0 type rxe netdev dummy0 || fail "rdma link add rxe0"
waited=0
until grep -q ACTIVE /sys/class/infiniband/rxe0/ports/1/state 2>/dev/null; do
  [ "$waited" -ge 100 ] && fail "rxe0 port 1 did not become ACTIVE"
  sleep 0.1
  waited=$((waited + 1))
done
say "$(uptime_s)" "rxe0 ACTIVE, gid[1] $(cat /sys/class/infiniband/rxe0/ports/1/gids/1)"
echo rxe0 > "$share/rxe-ready"

say "$(uptime_s)" "running the command from the host"
chroot /host /bin/bash /tmp/rdma-vm/command.sh
status=$?
echo "$status" > "$share/exit-code"
say "$(uptime_s)" "command exited with status $status; powering off"
umount "$share"
stop
