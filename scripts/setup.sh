#!/bin/bash
# Set up a fresh Debian machine for ociruntime: system packages, a virtualenv in
# .venv built from Debian's python3 (faster to start than others here), the package
# with its C helper, and the fast launcher /usr/local/bin/ociruntime (OCIRUNTIME_BIN
# puts it elsewhere: a second checkout can then have its own without touching this one).
set -euo pipefail
cd "$(dirname "$0")/.."

# apparmor: its apparmor_parser loads the test profile of the qemu lane, whose kernel has AppArmor.
PACKAGES="procps busybox-static libseccomp-dev runc docker.io python3-venv python3-dev libffi-dev gcc hyperfine qemu-system-x86 linux-image-cloud-amd64 apparmor"
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
rm -rf build ./*.egg-info

# The launcher: a small C program (native/launcher.c; static, it starts ~0.4 ms sooner)
# that, for create and run, starts the cgroup-migration primer before Python, then runs
# Python on the launcher script, which skips site (-I -S) and finds the package itself
# (~3 ms less per call than a console script).
site=$(.venv/bin/python3 -I -c 'import ociruntime, os; print(os.path.dirname(ociruntime.__path__[0]))')
script="$PWD/.venv/bin/ociruntime-launcher"
cat > "$script" <<LAUNCHER
#!$PWD/.venv/bin/python3 -IS
import sys
sys.path.append("$site")
from ociruntime.main import entry
entry()
LAUNCHER
chmod 755 "$script"
value_options=$(.venv/bin/python3 -I -c 'from ociruntime.main import GLOBAL
print(",".join(f"\"{name}\"" for name, (_, takes_value, _) in GLOBAL.items() if takes_value))')
bin=${OCIRUNTIME_BIN:-/usr/local/bin/ociruntime}
gcc -O2 -Wall -Wextra -static -o "$bin" native/launcher.c native/exeseal.c \
    -DOCI_PYTHON="\"$PWD/.venv/bin/python3\"" -DOCI_SCRIPT="\"$script\"" -DOCI_VALUE_OPTIONS="$value_options"
version=$("$bin" --version)
echo "setup: ${version%%$'\n'*} at $bin"
