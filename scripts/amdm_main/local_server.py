"""Start a headless ComfyUI (main.py) on a free loopback port with this pack installed, on a
private --base-directory: custom_nodes/amdm_pack -> the repository, models/ laid out from the
files given (symlinks), input/ and output/ of its own. Stopped with SIGTERM; the directory is
removed unless keep=True."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .client import Client, ClientError

REPO_ROOT = Path(__file__).resolve().parents[2]
PACK_DIR_NAME = "amdm_pack"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_comfyui_path() -> Path:
    return Path(os.environ.get("COMFYUI_PATH") or REPO_ROOT / ".cache" / "ComfyUI").resolve()


def cuda_available(python: str) -> bool:
    """Ask the server's Python (not ours: it may be another interpreter) whether torch sees a GPU."""
    try:
        out = subprocess.run([python, "-c", "import torch; print(torch.cuda.is_available())"],
                             capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.stdout.strip().endswith("True")


class LocalServer:
    def __init__(self, models: dict[str, list[Path]], *, comfyui_path: Path | None = None,
                 python: str | None = None, base_dir: Path | None = None, cpu: bool | None = None,
                 keep: bool = False, log_path: Path | None = None, extra_args=()):
        """models: ComfyUI model folder name ("checkpoints", "gligen", ...) -> files to link in."""
        self.comfyui_path = Path(comfyui_path or default_comfyui_path())
        self.python = python or sys.executable
        self.base_dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="amdm_comfy_"))
        self.models = models
        self.cpu = cpu
        self.keep = keep
        self.log_path = Path(log_path) if log_path else self.base_dir / "comfyui.log"
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = None
        self.client = None

    def prepare(self) -> None:
        if not (self.comfyui_path / "main.py").is_file():
            raise ClientError(f"no ComfyUI at {self.comfyui_path} (run scripts/setup_env.sh or set COMFYUI_PATH)")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        for folder, files in self.models.items():
            d = self.base_dir / "models" / folder
            d.mkdir(parents=True, exist_ok=True)
            for f in files:
                f = Path(f).resolve()
                link = d / f.name
                if link.is_symlink() or link.exists():
                    link.unlink()
                link.symlink_to(f)
        nodes = self.base_dir / "custom_nodes"
        nodes.mkdir(exist_ok=True)
        pack = nodes / PACK_DIR_NAME
        if not pack.exists():
            pack.symlink_to(REPO_ROOT, target_is_directory=True)
        for d in ("input", "output", "temp", "user"):
            (self.base_dir / d).mkdir(exist_ok=True)

    def command(self) -> list[str]:
        cmd = [self.python, "main.py", "--listen", "127.0.0.1", "--port", str(self.port),
               "--base-directory", str(self.base_dir), "--disable-auto-launch", "--disable-api-nodes",
               "--database-url", "sqlite:///:memory:"]
        if self.cpu:
            cmd.append("--cpu")
        return cmd + self.extra_args

    def start(self, timeout: float = 180.0) -> Client:
        self.prepare()
        if self.cpu is None:
            self.cpu = not cuda_available(self.python)
        for _attempt in range(3):  # the port may be taken between free_port() and the bind
            self.port = free_port()
            env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                       DO_NOT_TRACK="1")
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(self.command(), cwd=self.comfyui_path, env=env, stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            self.client = Client(f"http://127.0.0.1:{self.port}")
            if self._wait_ready(timeout):
                return self.client
            if "address already in use" not in self.log_tail(30).lower():
                break
        raise ClientError(f"ComfyUI did not start (exit code {self.proc.returncode}); log: {self.log_path}\n"
                          + self.log_tail(30))

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if self.client.request("GET", "/object_info/AMDM_MultiModelSampler", timeout=10)[0] == 200:
                    return True
            except ClientError:
                pass
            time.sleep(0.25)
        self.stop()
        raise ClientError(f"ComfyUI did not answer within {timeout:.0f} s; log: {self.log_path}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)

    def close(self) -> None:
        self.stop()
        if not self.keep:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
