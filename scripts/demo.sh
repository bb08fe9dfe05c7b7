#!/bin/bash
# Set everything up, then run a real container from an example busybox bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bundle=$(mktemp -d /tmp/ociruntime-demo.XXXXXX)
trap 'rm -rf "$bundle"' EXIT
.venv/bin/python3 examples/busybox_bundle.py "$bundle" sh -c \
    'echo "hello from $(hostname), pid $$ in its own namespace"; id; cat /proc/self/uid_map'
ociruntime run --bundle "$bundle" "demo-$$"
