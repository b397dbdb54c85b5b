"""Provenance recorded in results.json: the commit, the device, the exact command."""
from __future__ import annotations

import os
import platform
import shlex
import subprocess

from host_setup import REPO_ROOT, Host


def git_info() -> dict:
    env_commit = os.environ.get("AMDM_BENCH_COMMIT")
    try:
        commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True, timeout=20).stdout.strip()
        status = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=True, timeout=20).stdout.splitlines()
        return {"commit": env_commit or commit, "source": "env AMDM_BENCH_COMMIT" if env_commit else "git",
                "modified_tracked_files": [s[3:] for s in status]}
    except (OSError, subprocess.SubprocessError):
        return {"commit": env_commit or "unknown", "source": "env AMDM_BENCH_COMMIT" if env_commit else "none",
                "modified_tracked_files": None}


def device_info(host: Host) -> dict:
    torch = host.torch
    if host.device.type == "cuda":
        p = torch.cuda.get_device_properties(host.device)
        return {"type": "cuda", "name": p.name, "total_memory_bytes": p.total_memory,
                "cuda": torch.version.cuda, "vram_state": str(host.mm.vram_state)}
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), name)
    except OSError:
        pass
    return {"type": "cpu", "name": name, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}


def command_line(argv) -> str:
    return shlex.join(["python", "bench/speed/run.py", *argv])
