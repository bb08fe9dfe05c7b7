#!/bin/bash
# Set up a fresh Debian machine for ociruntime: system packages, a virtualenv in
# .venv built from Debian's python3 (faster to start than others here), the package
# with its C helper, and the fast launcher /usr/local/bin/ociruntime (OCIRUNTIME_BIN
# puts it elsewhere: a second checkout can then have its own without touching this one).
set -euo pipefail
cd "$(dirname "$0")/.."

# strace: tests/test_runc_contract.py traces kill --all's freezer writes and signals.
# apparmor: its apparmor_parser loads the test profile of the qemu lane, whose kernel has AppArmor.
# protobuf-compiler: its protoc compiles shim/proto (setup.py, tests/devbuild.py).
# containerd: tests/test_containerd.py and bench/ctr_run.py, bench/shim_memory.py run a private one (docker.io pulls it in too).
# systemd dbus: PID 1 and the system bus of the qemu lane's systemd guest (tests marked systemd).
# libsystemd0: libsystemd.so.0, whose sd-bus the C helper loads for --systemd-cgroup (native/sdbus.c).
# podman conmon uidmap: tests/test_podman.py as root, tests/test_podman_rootless.py as an ordinary user (newuidmap/newgidmap).
# criu iproute2 iptables tar gzip: checkpoint/restore (tests marked criu, run in the qemu lane's plain guest); to dump a network namespace criu runs iproute2's ip and locks it with iptables-restore, a tmpfs it saves with GNU tar and gzip.
PACKAGES="procps strace busybox-static libseccomp-dev runc containerd docker.io python3-venv python3-dev libffi-dev gcc hyperfine qemu-system-x86 linux-image-cloud-amd64 apparmor protobuf-compiler systemd dbus libsystemd0 podman conmon uidmap criu iproute2 iptables tar gzip"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

if [ ! -x .venv/bin/python3 ]; then
    /usr/bin/python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q . pytest ruff hypothesis
rm -rf build/lib* build/temp* build/bdist* ./*.egg-info  # pip's build; build/dev is the tests' (tests/devbuild.py)

# The launcher (native/build_launcher.py tells why a C program and a script): its
# Python is this venv's, its package the one just installed.
bin=${OCIRUNTIME_BIN:-/usr/local/bin/ociruntime}
.venv/bin/python3 -I native/build_launcher.py "$bin" "$PWD/.venv/bin/ociruntime-launcher"
# containerd's shim for `--runtime io.containerd.ociruntime.v2`, beside it (containerd looks on PATH)
.venv/bin/python3 -I native/build_launcher.py --shim "$(dirname "$bin")/containerd-shim-ociruntime-v2" \
    "$PWD/.venv/bin/containerd-shim-ociruntime-v2-launcher"
version=$("$bin" --version)
echo "setup: ${version%%$'\n'*} at $bin"
