#!/usr/bin/env bash
# The README's test command: sets up .cache/ (venv + ComfyUI host) if needed, then runs the suite.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/core -k window).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
env_out="$(bash scripts/setup_env.sh)"
eval "$(echo "$env_out" | grep -E '^(COMFYUI_PATH|PYTHON)=' | sed 's/^/export /')"
export COMFYUI_PATH PYTHON
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"
if [ "$#" -eq 0 ]; then set -- tests; fi
exec "$PYTHON" -m pytest -p no:cacheprovider --import-mode=importlib -q "$@"
