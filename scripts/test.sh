#!/bin/bash
# Set everything up, lint, and run the whole test suite (as root: real containers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/python3 -m pytest -q -p no:cacheprovider "$@"
