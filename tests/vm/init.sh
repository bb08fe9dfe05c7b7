#!/bin/busybox sh
# The guest's init (pid 1) in the cgroup v2 lane; tests/vm/lane.py fills in the @...@ values.
#
# Stage 1 runs on the initramfs itself (the kernel's rootfs), where pivot_root(2) fails
# and so would every container: it bind-mounts the rootfs onto a directory, moves that
# mount over / and chroots into it (what switch_root does, without copying or deleting
# anything). Stage 2 mounts the pure cgroup v2 host the tests need, loads the kernel
# modules criu needs, runs the tests and powers off. In the systemd guest (@SYSTEMD@
# names it) stage 2 execs systemd instead, still pid 1, which mounts the API file systems
# and cgroup2 itself and starts v2lane.service: that runs "/init tests", the part after
# the mounts (that guest loads no modules).
bb=/bin/busybox

case "$1" in
tests) ;;
stage2)
    if [ -n "@SYSTEMD@" ]; then
        # --unit: v2lane.service and what it pulls in (the bus), not default.target. A crash
        # of pid 1 reboots, which ends qemu (-no-reboot), instead of freezing. No journald:
        # services' output goes nowhere, their errors to the console.
        exec @SYSTEMD@ --unit=v2lane.service --crash-reboot=yes --show-status=error \
            --default-standard-output=null --default-standard-error=tty
    fi
    $bb mount -t proc proc /proc
    $bb mount -t sysfs sysfs /sys
    $bb mount -t devtmpfs devtmpfs /dev
    $bb mkdir -p /dev/pts /dev/shm /dev/mqueue
    $bb mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts /dev/pts
    $bb mount -t tmpfs -o mode=1777 shm /dev/shm
    $bb mount -t mqueue mqueue /dev/mqueue
    # securityfs: AppArmor (the kernel's LSM) shows itself and takes profiles there.
    $bb mount -t securityfs securityfs /sys/kernel/security
    # Pure cgroup v2, mounted as systemd does: the unified hierarchy at /sys/fs/cgroup and no
    # v1 hierarchy anywhere.
    # This shell stays in the root cgroup, which may hold processes and still enable
    # controllers for its children: that is the runtime's business, not ours.
    $bb mount -t cgroup2 -o nosuid,nodev,noexec,nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup
    # The kernel modules criu needs (lane.py's CRIU_MODULES: socket diag, tun, veth,
    # nf_tables), each after those it depends on: nothing here loads them on demand.
    failed=
    for m in @MODULES@; do
        err=$($bb insmod "$m" 2>&1) || failed="$failed ${m##*/} (${err:-insmod failed})"
    done
    [ -n "$failed" ] && echo "V2LANE: kernel modules failed to load:$failed"
    # /tmp and /run get a tmpfs unless the payload is there (a CI clone in /tmp/x): the root
    # is the initramfs, in memory too, and a mount would hide it.
    for d in /tmp:1777 /run:755; do
        [ -z "$($bb ls -A "${d%:*}")" ] && $bb mount -t tmpfs -o mode="${d#*:}" tmpfs "${d%:*}"
    done
    ;;
*)
    $bb mkdir -p /v2lane/root
    $bb mount --bind / /v2lane/root || { echo "V2LANE: bind / failed"; $bb poweroff -f; }
    cd /v2lane/root || $bb poweroff -f
    $bb mount --move . / || { echo "V2LANE: move / failed"; $bb poweroff -f; }
    exec $bb chroot . /init stage2
    ;;
esac

# Where this shell is: cgroup2's controllers and its cgroup there; on cgroup v1 (the v1
# systemd guest: no cgroup2 mounted) the hierarchies and its cgroup in name=systemd's.
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    layout="cgroup2=$($bb cat /sys/fs/cgroup/cgroup.controllers)"
    in=$($bb sed -n 's/^0:://p' /proc/self/cgroup)
else
    layout="cgroup-v1=$($bb ls /sys/fs/cgroup | $bb tr '\n' ' ')"
    in=$($bb sed -n 's/^[0-9]*:name=systemd://p' /proc/self/cgroup)
fi
if [ "$1" = tests ] && [ "${layout#cgroup2=}" != "$layout" ]; then
    # v2lane.service is delegated to us (Delegate=yes): this shell leaves its cgroup for a
    # leaf below it, pytest/, so that the service's cgroup may enable controllers for
    # cgroups the tests make beside that leaf (cgroup v1 has no such rule).
    cg=/sys/fs/cgroup$in
    $bb mkdir "$cg/pytest" && echo $$ > "$cg/pytest/cgroup.procs" && in=$in/pytest ||
        echo "V2LANE: cannot move to $cg/pytest"
fi
$bb hostname v2lane
$bb ip link set lo up 2>/dev/null
# Every busybox applet, last on PATH: for tests that run a command on the "host".
$bb mkdir -p /v2lane/bin
$bb --install -s /v2lane/bin

export PATH=@PATH@:/v2lane/bin HOME=/root LANG=C.UTF-8 TERM=dumb
@ENV@
read -r up _ < /proc/uptime
echo "V2LANE-BOOTED uptime=$up $layout in=$in"

cd @PROJECT@ && @COMMAND@
code=$?
read -r up _ < /proc/uptime
echo
echo "V2LANE-DONE uptime=$up"
echo "V2LANE-EXIT=$code"
$bb sync
$bb poweroff -f
