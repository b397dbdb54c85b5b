#!/usr/bin/env bash
# The README's test command: sets up .cache/ (venv + ComfyUI host) if needed, then runs the suite.
# The host: COMFYUI_PATH=<your ComfyUI>, or AMDM_HOST=0.3.75 | 0.33.0 | oldest | newest (see
# scripts/setup_env.sh), or AMDM_HOST=all for the host matrix (every supported host in turn; CI).
# Extra arguments go to pytest (e.g. scripts/test.sh tests/core -k window).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [ "${AMDM_HOST:-}" = all ]; then
  [ -z "${COMFYUI_PATH:-}" ] || { echo "AMDM_HOST=all runs the project's hosts; unset COMFYUI_PATH" >&2; exit 1; }
  status=0
  for host in 0.3.75 0.33.0; do
    echo "=== host $host ===" >&2
    AMDM_HOST=$host bash "$0" "$@" || status=1
  done
  exit $status
fi

env_out="$(bash scripts/setup_env.sh)"
eval "$(echo "$env_out" | grep -E '^(COMFYUI_PATH|PYTHON|AMDM_HOST_VERSION|AMDM_NEWEST_FRONTEND_ROOT)=' | sed 's/^/export /')"
echo "[test] host ComfyUI $AMDM_HOST_VERSION at $COMFYUI_PATH" >&2
# Lint first (the configured rules in pyproject.toml): cheap, and a finding fails the run.
"${AMDM_CACHE:-$ROOT/.cache}/venv/bin/ruff" check --quiet "$ROOT"
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"
if [ "$#" -eq 0 ]; then set -- tests; fi
exec "$PYTHON" -m pytest -p no:cacheprovider --import-mode=importlib -q "$@"
