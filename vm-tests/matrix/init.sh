#!/bin/sh
# /init of a kernel-matrix guest (busybox sh). run.sh packs it into the initramfs with weft,
# the test binaries, the tools they call and the kernel's modules. It mounts what the tests
# expect, loads the modules, runs every test binary in /matrix/tests.list, checks how weft
# attaches on this kernel, and powers off. Lines starting with "WEFT-MATRIX " are what run.sh
# reads back from the serial console; everything else is there for a person reading the log.
export PATH=/usr/sbin:/usr/bin:/busybox
export HOME=/root TMPDIR=/tmp
/usr/bin/busybox mkdir -p /busybox
/usr/bin/busybox --install -s /busybox

mark() { echo "WEFT-MATRIX $*"; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs shm /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mkdir -p /run/netns /root /var/run

mark "kernel $(uname -r)"
# Modules in dependency order (run.sh resolved them with modprobe --show-depends).
while read -r ko; do
  [ -n "$ko" ] || continue
  insmod "$ko" || mark "module-failed $ko"
done </matrix/modules.order
ip link set lo up
# weft and the tests read settings from the environment; the harness passes them in here.
. /matrix/env

# Two test threads: the guest has two vCPUs, and BPF loads under TCG are slow.
MATRIX=/matrix BPFFS=/sys/fs/bpf/mx NS=mx TEST_THREADS=2
. /matrix/suite.sh

mark "done"
sync
poweroff -f
