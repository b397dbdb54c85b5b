#!/usr/bin/env bash
# Run HERE (the development machine, with network) before a GPU run: builds .gpu_carry/ for the
# device tool's `carry` (the GPU machine has the working tree but not .cache/, and no network).
#
#   .gpu_carry/ComfyUI.tar.gz   ComfyUI from $COMFYUI_PATH or .cache/ComfyUI (no tests, no caches; ~7 MB)
#   .gpu_carry/wheels/*.whl     what the GPU image's python3 (3.12, torch/transformers/scipy... present)
#                               lacks for ComfyUI 0.3.75: av (imported by comfy_api), torchsde and
#                               trampoline (imported by comfy.k_diffusion); ~36 MB
#
# .gpu_carry/ is added to .git/info/exclude (never committed). Then, on the device tool:
#   run(command="bash bench/speed/gpu_run.sh", carry=[".gpu_carry"], timeout_s=420)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$ROOT/.cache/venv/bin/python}"
COMFY="${COMFYUI_PATH:-$ROOT/.cache/ComfyUI}"
CARRY="${AMDM_GPU_CARRY:-.gpu_carry}"
PYVER="${GPU_PYTHON_VERSION:-3.12}"

[ -f "$COMFY/nodes.py" ] || { echo "no ComfyUI at $COMFY: run scripts/setup_env.sh or set COMFYUI_PATH" >&2; exit 2; }
mkdir -p "$ROOT/.git/info"
grep -qxF "/$CARRY/" "$ROOT/.git/info/exclude" 2>/dev/null || echo "/$CARRY/" >> "$ROOT/.git/info/exclude"
rm -rf "$CARRY"
mkdir -p "$CARRY/wheels"

tar -C "$(dirname "$COMFY")" -czf "$CARRY/ComfyUI.tar.gz" \
    --exclude=__pycache__ --exclude=.git --exclude=tests --exclude=tests-unit "$(basename "$COMFY")"
# the carried ComfyUI keeps its own folder name; gpu_run.sh finds it by its nodes.py
echo "$(basename "$COMFY")" > "$CARRY/ComfyUI.dirname"

# the same versions as the development venv, for the GPU image's python
ver() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$CARRY/wheels" "av==$(ver av)" "torchsde==$(ver torchsde)" "trampoline==$(ver trampoline)"

du -sh "$CARRY" "$CARRY"/* "$CARRY"/wheels/*
tree_kb=$(git ls-files -co --exclude-standard -z | du -ck --files0-from=- 2>/dev/null | tail -1 | cut -f1)
carry_kb=$(du -sk "$CARRY" | cut -f1)
echo "working tree ${tree_kb} KiB + carry ${carry_kb} KiB = $((tree_kb + carry_kb)) KiB (the device tool takes 65536 KiB)"
