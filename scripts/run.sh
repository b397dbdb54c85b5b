#!/usr/bin/env bash
# The README's main command. Sets up .cache/ if needed, then runs the core demo: AMDM with two
# analytic members, printing the trace. Extra arguments go to the demo (--steps, --window, --omega).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
env_out="$(bash scripts/setup_env.sh)"
PYTHON="$(echo "$env_out" | sed -n 's/^PYTHON=//p')"
exec "$PYTHON" -m amdm_core.demo "$@"
