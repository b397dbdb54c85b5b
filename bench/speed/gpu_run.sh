#!/usr/bin/env bash
# The speed and memory benchmark on a lent GPU machine, in one command (repo root):
#
#   bash bench/speed/gpu_run.sh
#
# Full-size SD1.5-architecture UNets with random weights (comfy's own UNetModel, the SD15 config),
# fp16, every measurement of `run.py --full`, repeats trimmed to fit AMDM_BENCH_BUDGET seconds
# (default 200; at least 3 repeats). Installs nothing from the network. Environment:
#   PYTHON             the interpreter (default python3; the GPU image's python3 holds torch)
#   COMFYUI_PATH       an unpacked ComfyUI; else .gpu_carry/ComfyUI.tar.gz (bench/speed/prepare_gpu_carry.sh)
#                      is unpacked to /tmp; else .cache/ComfyUI; else the script says so and exits 2
#   AMDM_GPU_CARRY     the carried folder (default .gpu_carry); its wheels/*.whl (av, torchsde,
#                      trampoline) are installed with --no-index into /tmp/amdm_site
#   OUT                where results go (the device tool sets it); else bench/results/speed/cuda
#   AMDM_BENCH_COMMIT  the commit to record when the tree has no .git (the device copy has none)
#   AMDM_BENCH_ARGS    run.py's arguments (default: --full --device cuda --model sd15 --time-budget $AMDM_BENCH_BUDGET)
# Extra arguments are appended to run.py's.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
DEST="${OUT:-$ROOT/bench/results/speed/cuda}"
CARRY="${AMDM_GPU_CARRY:-.gpu_carry}"
BUDGET="${AMDM_BENCH_BUDGET:-200}"
mkdir -p "$DEST"
exec > >(tee "$DEST/run.log") 2>&1
echo "== gpu_run.sh in $ROOT, results to $DEST, $(date -u +%FT%TZ)"

"$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' \
    || { echo "FAILED: $PY cannot import torch (set PYTHON)"; exit 2; }
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader

if [ -z "${COMFYUI_PATH:-}" ]; then
    if [ -f "$CARRY/ComfyUI.tar.gz" ]; then
        rm -rf /tmp/amdm_comfy && mkdir -p /tmp/amdm_comfy
        tar -xzf "$CARRY/ComfyUI.tar.gz" -C /tmp/amdm_comfy || { echo "FAILED: cannot unpack $CARRY/ComfyUI.tar.gz"; exit 2; }
        COMFYUI_PATH="$(dirname "$(ls /tmp/amdm_comfy/*/nodes.py | head -1)")"
    elif [ -f .cache/ComfyUI/nodes.py ]; then
        COMFYUI_PATH="$ROOT/.cache/ComfyUI"
    else
        echo "FAILED: no ComfyUI. Set COMFYUI_PATH, or run bench/speed/prepare_gpu_carry.sh on the development"
        echo "machine and carry $CARRY (the device copy of the tree has no .cache/)."
        exit 2
    fi
fi
export COMFYUI_PATH
echo "ComfyUI: $COMFYUI_PATH ($(grep -o '"[0-9.]*"' "$COMFYUI_PATH/comfyui_version.py" 2>/dev/null))"

if ls "$CARRY"/wheels/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/amdm_site \
        "$CARRY"/wheels/*.whl || { echo "FAILED: installing the carried wheels"; exit 2; }
    export PYTHONPATH="/tmp/amdm_site${PYTHONPATH:+:$PYTHONPATH}"
    echo "carried wheels: $(cd "$CARRY/wheels" && ls *.whl | tr '\n' ' ')"
fi

export PYTHONUNBUFFERED=1
export AMDM_BENCH_WRAPPER="bash bench/speed/gpu_run.sh"
ARGS="${AMDM_BENCH_ARGS:---full --device cuda --model sd15 --time-budget $BUDGET}"
# shellcheck disable=SC2086
"$PY" bench/speed/run.py $ARGS --out "$DEST" "$@"
rc=$?
echo "== run.py exited $rc; files in $DEST: $(ls "$DEST" | tr '\n' ' ')"
exit $rc
