#!/usr/bin/env bash
# Run the tinyml-modelzoo pipeline. First use creates .venv/ and installs the project.
#   ./run_tinyml_modelzoo.sh CONFIG.yaml [--set SECTION.KEY=VALUE ...] [--resume RUN_DIR]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/scripts/ensure_venv.sh"
exec "$here/.venv/bin/python" -m tinyml_modelzoo "$@"
