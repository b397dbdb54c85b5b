"""Shared by the benchmarks' quick-mode tests: run one benchmark module in a subprocess (it sets up
ComfyUI's sys.path or server itself and must not share torch/ComfyUI state with other tests)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
COMFYUI_PATH = Path(os.environ.get("COMFYUI_PATH") or REPO_ROOT / ".cache" / "ComfyUI").resolve()


def run_quick_bench(module: str, out: Path, what: str) -> dict:
    """`python -m <module> --quick --out <out>`; its results.json, or the test fails with its output."""
    if not (COMFYUI_PATH / "nodes.py").is_file():
        pytest.fail(f"ComfyUI not found at {COMFYUI_PATH}: run scripts/setup_env.sh or set COMFYUI_PATH",
                    pytrace=False)
    env = dict(os.environ, COMFYUI_PATH=str(COMFYUI_PATH))
    proc = subprocess.run([sys.executable, "-m", module, "--quick", "--out", str(out)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"{what} failed (rc {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}",
                    pytrace=False)
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="session")
def quick_bench():
    return run_quick_bench
