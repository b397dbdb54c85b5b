#!/usr/bin/env bash
# The README's main command. Sets up .cache/ if needed (venv + ComfyUI host), then runs the shipped
# two-model AMDM workflow in a headless ComfyUI (API mode) on generated demo models and writes
# output/amdm_demo/{amdm,base_alone,comparison}.png + summary.json/.txt. Options go to
# scripts/main.py (--help: --ckpt-base/--ckpt-helper FILE, --workflow FILE, --server URL, --output DIR,
# --seed N, --steps N, --size PX). `scripts/run.sh --core-demo` runs the host-free core demo instead.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
env_out="$(bash scripts/setup_env.sh)"
PYTHON="$(echo "$env_out" | sed -n 's/^PYTHON=//p')"
COMFYUI_PATH="$(echo "$env_out" | sed -n 's/^COMFYUI_PATH=//p')"
export COMFYUI_PATH
if [ "${1:-}" = "--core-demo" ]; then
  shift
  exec "$PYTHON" -m amdm_core.demo "$@"
fi
exec "$PYTHON" scripts/main.py "$@"
