#!/usr/bin/env bash
# Run the test suite (fast by default; pass -m slow for the long end-to-end runs).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/scripts/ensure_venv.sh"
cd "$here"
exec "$here/.venv/bin/python" -m pytest -q "$@"
