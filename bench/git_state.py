"""The repository's commit and uncommitted paths, stamped on every benchmark result."""
from __future__ import annotations

import subprocess
from pathlib import Path


def git_state(root: Path) -> dict:
    """{"commit", "dirty", "dirty_paths" (at most 40)}; empty values where git cannot answer."""
    def git(*a):
        try:
            return subprocess.run(["git", *a], cwd=root, capture_output=True, text=True, timeout=20).stdout
        except Exception:
            return ""
    status = git("status", "--porcelain")
    return {"commit": git("rev-parse", "HEAD").strip(), "dirty": bool(status.strip()),
            "dirty_paths": [ln[3:] for ln in status.splitlines() if len(ln) > 3][:40]}
