"""One launcher for a headless ComfyUI (main.py) with this pack installed, used by the main command,
the tests and the benchmarks.

The server gets a private --base-directory: custom_nodes/ links to the pack (and any other packs
given), models/ is either a link to a whole models folder or a layout of links to the files given,
input/ output/ temp/ user/ are its own. It listens on a free loopback port; it is stopped with
SIGTERM, and the directory is removed by cleanup() unless keep=True.
"""
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

from .client import ComfyClient, ClientError, ServerError
from .host import REPO_ROOT
from .host import comfyui_path as default_comfyui_path

PACK_DIR_NAME = "amdm_pack"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as e:
        return f"<no server log: {e}>"
    return "\n".join(text.splitlines()[-lines:])


def cuda_available(python: str) -> bool:
    """Ask the server's Python (it may be another interpreter) whether torch sees a GPU."""
    try:
        out = subprocess.run([python, "-c", "import torch; print(torch.cuda.is_available())"],
                             capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.stdout.strip().endswith("True")


class ComfyServer:
    """One ComfyUI server process on a private base directory.

    models_dir: a ComfyUI models/ folder to link as a whole; models: {folder: [files]} to link
    file by file (either or neither). cpu: True passes --cpu, None asks the server's Python
    whether it has a GPU. front_end_root: a frontend other than the host's pinned package.
    """

    def __init__(self, base_dir: Path | None = None, models_dir: Path | None = None, log_path: Path | None = None,
                 comfyui_path: Path | None = None, python: str | None = None, custom_nodes: dict | None = None,
                 extra_args=(), front_end_root: Path | None = None, models: dict | None = None,
                 cpu: bool | None = True, keep: bool = False):
        self.base_dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="amdm_comfy_"))
        self.models_dir = Path(models_dir) if models_dir else None
        self.models = models or {}
        self.log_path = Path(log_path) if log_path else self.base_dir / "comfyui.log"
        self.comfyui_path = Path(comfyui_path or default_comfyui_path())
        self.python = python or os.environ.get("COMFYUI_PYTHON") or sys.executable
        self.custom_nodes = custom_nodes if custom_nodes is not None else {PACK_DIR_NAME: REPO_ROOT}
        self.extra_args = list(extra_args)
        self.front_end_root = Path(front_end_root) if front_end_root else None
        self.cpu, self.keep = cpu, keep
        self.port = self.proc = self.client = None
        self.frontend = "comfyui-frontend-package"
        self.startup_s = None

    # -- the base directory ----------------------------------------------------------------
    def prepare(self) -> None:
        if not (self.comfyui_path / "main.py").is_file():
            raise ServerError(f"no ComfyUI at {self.comfyui_path}: run scripts/setup_env.sh or set COMFYUI_PATH")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        models = self.base_dir / "models"
        if self.models_dir is not None and not models.exists():
            models.symlink_to(self.models_dir.resolve(), target_is_directory=True)
        for folder, files in self.models.items():
            d = models / folder
            d.mkdir(parents=True, exist_ok=True)
            for f in files:
                link = d / Path(f).name
                if link.is_symlink() or link.exists():
                    link.unlink()
                link.symlink_to(Path(f).resolve())
        nodes_dir = self.base_dir / "custom_nodes"
        nodes_dir.mkdir(exist_ok=True)
        for name, target in self.custom_nodes.items():
            if not (nodes_dir / name).exists():
                (nodes_dir / name).symlink_to(Path(target).resolve(), target_is_directory=True)
        for d in ("input", "output", "temp", "user"):
            (self.base_dir / d).mkdir(exist_ok=True)

    # -- the process ---------------------------------------------------------------------------
    def command(self, front_end_root: Path | None = None) -> list:
        cmd = [self.python, "main.py", "--listen", "127.0.0.1", "--port", str(self.port),
               "--base-directory", str(self.base_dir), "--disable-auto-launch", "--disable-api-nodes",
               "--database-url", "sqlite:///:memory:"]
        if self.cpu:
            cmd.append("--cpu")
        if front_end_root is not None:
            cmd += ["--front-end-root", str(front_end_root)]
        return cmd + self.extra_args

    def _spawn(self, front_end_root: Path | None) -> None:
        self.port = free_port()
        env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   DO_NOT_TRACK="1")
        # One torch thread by default (as the in-process layer): same numbers on any core count,
        # and no OpenMP oversubscription against other torch processes on a small CI box.
        if os.environ.get("AMDM_TEST_THREADS"):
            env["OMP_NUM_THREADS"] = os.environ["AMDM_TEST_THREADS"]
        else:
            env.setdefault("OMP_NUM_THREADS", "1")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n$ {' '.join(self.command(front_end_root))}\n".encode())
            log.flush()
            # own session: stopping it never signals the caller's process group
            self.proc = subprocess.Popen(self.command(front_end_root), cwd=self.comfyui_path, env=env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.client = ComfyClient(f"http://127.0.0.1:{self.port}", log_tail=self.log_tail)
        self.client.server = self

    def _wait_ready(self, timeout: float) -> bool:
        """True once /object_info answers 200; False if the process exited first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if self.client.request("GET", "/object_info", timeout=10.0)[0] == 200:
                    return True
            except ClientError:
                pass
            time.sleep(0.2)
        self.stop()
        raise ServerError(f"ComfyUI did not answer /object_info within {timeout:.0f} s\n"
                          f"--- {self.log_path} (tail) ---\n{self.log_tail()}")

    def _launch(self, front_end_root: Path | None, timeout: float) -> bool:
        # free_port() releases the port before the server binds it: retry if someone took it
        for _ in range(3):
            self._spawn(front_end_root)
            if self._wait_ready(timeout):
                return True
            if "address already in use" not in self.log_tail(30).lower():
                return False
        return False

    def start(self, timeout: float = 180.0) -> ComfyClient:
        t0 = time.monotonic()
        self.prepare()
        if self.cpu is None:
            self.cpu = not cuda_available(self.python)
        if self.front_end_root is not None:
            if not (self.front_end_root / "index.html").is_file():
                raise ServerError(f"front_end_root {self.front_end_root} has no index.html")
            self.frontend = f"front-end-root:{self.front_end_root}"
        if not self._launch(self.front_end_root, timeout):
            log = self.log_tail(200)
            if self.front_end_root is not None or (
                    "comfyui-frontend-package" not in log and "frontend_management" not in log):
                raise ServerError(f"ComfyUI exited with code {self.proc.returncode} during start-up\n"
                                  f"--- {self.log_path} (tail) ---\n{self.log_tail()}")
            # the frontend package is missing or broken: a folder with an index.html will do (API mode)
            stub = self.base_dir / "frontend_stub"
            stub.mkdir(exist_ok=True)
            (stub / "index.html").write_text("<html><body>frontend stub</body></html>\n")
            self.frontend = "stub"
            if not self._launch(stub, timeout):
                raise ServerError(f"ComfyUI exited with code {self.proc.returncode} during start-up "
                                  f"(also with --front-end-root)\n--- {self.log_path} (tail) ---\n{self.log_tail()}")
        self.startup_s = time.monotonic() - t0
        return self.client

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)

    def cleanup(self) -> None:
        self.stop()
        if not self.keep:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    close = cleanup

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
