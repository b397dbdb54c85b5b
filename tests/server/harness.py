"""Run a real ComfyUI server (main.py) for tests and talk to it over HTTP + websocket.

ComfyServer   prepares a --base-directory (models symlinked in, custom node packs symlinked
              into custom_nodes/), starts `python main.py --cpu ...` on a free port, waits for
              /object_info, logs to a file, stops with SIGTERM.
ComfyClient   stdlib urllib + websocket-client: object_info, post_prompt, wait, run, view,
              interrupt, alive.
graph helpers API-format prompt dicts for the tiny models and the fixture nodes.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import websocket  # websocket-client

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_NODES_DIR = REPO_ROOT / "tests" / "fixtures" / "comfy_test_nodes"
PACK_DIR_NAME = "amdm_pack"


def default_comfyui_path() -> Path:
    return Path(os.environ.get("COMFYUI_PATH") or REPO_ROOT / ".cache" / "ComfyUI").resolve()


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


class ServerError(RuntimeError):
    pass


class PromptRejected(RuntimeError):
    """POST /prompt answered with a non-200 status (validation failure)."""

    def __init__(self, status: int, body: dict):
        super().__init__(f"POST /prompt -> HTTP {status}: {json.dumps(body)[:2000]}")
        self.status = status
        self.body = body


class PromptFailed(RuntimeError):
    """The prompt ran but ended in execution_error / execution_interrupted."""

    def __init__(self, result: "RunResult"):
        err = result.error or {}
        super().__init__(f"prompt {result.prompt_id} ended with status {result.status_str!r}: "
                         f"{err.get('node_type')} {err.get('exception_type')}: {err.get('exception_message')}\n"
                         + "".join(err.get("traceback") or []))
        self.result = result


@dataclass
class RunResult:
    prompt_id: str
    history: dict                                 # the /history/<id> entry
    messages: list = field(default_factory=list)  # (type, data) websocket messages of this prompt

    @property
    def outputs(self) -> dict:
        return self.history.get("outputs", {})

    @property
    def status_str(self) -> str:
        return self.history.get("status", {}).get("status_str", "")

    @property
    def ok(self) -> bool:
        return self.status_str == "success"

    @property
    def progress(self) -> list:
        """data of every `progress` message: {"value", "max", "node", "prompt_id"}."""
        return [d for t, d in self.messages if t == "progress"]

    @property
    def executing(self) -> list:
        """Node ids in the order the server announced them (`executing`, final None dropped)."""
        return [d["node"] for t, d in self.messages if t == "executing" and d.get("node") is not None]

    @property
    def cached(self) -> list:
        return [n for t, d in self.messages if t == "execution_cached" for n in d.get("nodes", [])]

    @property
    def error(self) -> dict | None:
        for t, d in self.messages:
            if t in ("execution_error", "execution_interrupted"):
                return d
        return None

    def ui(self, node_id) -> dict:
        """The ui dict an output node returned (history outputs[node_id])."""
        return self.outputs[str(node_id)]


class ComfyClient:
    def __init__(self, base_url: str, client_id: str | None = None, log_tail=None):
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id or str(uuid.uuid4())
        self._log_tail = log_tail or (lambda: "")
        self.server: ComfyServer | None = None  # set by ComfyServer

    # -- plain HTTP ------------------------------------------------------------------------
    def _request(self, method: str, path: str, body=None, timeout: float = 30.0):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def _json(self, method: str, path: str, body=None, timeout: float = 30.0):
        status, raw = self._request(method, path, body, timeout)
        try:
            payload = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            payload = {"raw": raw.decode(errors="replace")}
        return status, payload

    def object_info(self, cls: str | None = None) -> dict | None:
        """All node schemas, or one class's schema (None if the server does not know it)."""
        if cls is None:
            return self._json("GET", "/object_info")[1]
        return (self._json("GET", "/object_info/" + urllib.parse.quote(cls))[1] or {}).get(cls)

    def post_prompt(self, graph: dict, prompt_id: str | None = None) -> tuple[int, dict]:
        body = {"prompt": graph, "client_id": self.client_id}
        if prompt_id:
            body["prompt_id"] = prompt_id
        return self._json("POST", "/prompt", body)

    def history(self, prompt_id: str) -> dict | None:
        return (self._json("GET", "/history/" + prompt_id)[1] or {}).get(prompt_id)

    def wait(self, prompt_id: str, timeout: float = 60.0) -> dict:
        """Poll /history until the prompt has an entry (it appears when the prompt finishes)."""
        deadline = time.monotonic() + timeout
        while True:
            entry = self.history(prompt_id)
            if entry is not None and (entry.get("status", {}).get("completed")
                                      or entry.get("status", {}).get("status_str") == "error"):
                return entry
            if time.monotonic() > deadline:
                raise TimeoutError(f"prompt {prompt_id} not finished after {timeout:.0f} s\n"
                                   f"--- server log tail ---\n{self._log_tail()}")
            time.sleep(0.05)

    def view(self, filename: str, subfolder: str = "", type: str = "output") -> bytes:
        query = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": type})
        status, raw = self._request("GET", "/view?" + query)
        if status != 200:
            raise ServerError(f"GET /view?{query} -> HTTP {status}")
        return raw

    def interrupt(self, prompt_id: str | None = None) -> int:
        return self._request("POST", "/interrupt", {"prompt_id": prompt_id} if prompt_id else {})[0]

    def alive(self) -> bool:
        try:
            return self._request("GET", "/queue", timeout=5.0)[0] == 200
        except (OSError, urllib.error.URLError):
            return False

    # -- websocket-driven run ----------------------------------------------------------------
    def run(self, graph: dict, timeout: float = 60.0, check: bool = True, on_message=None) -> RunResult:
        """POST the graph and follow it on the websocket until `executing` with node None.
        Collects this prompt's messages (progress, executing, executed, execution_*), then reads
        /history. Raises PromptRejected on a 400, PromptFailed on error/interrupt when check.
        on_message(type, data) is called for each message of this prompt (e.g. to interrupt)."""
        prompt_id = str(uuid.uuid4())   # hosts >= 0.3x accept only the canonical hyphenated form
        ws_url = self.base_url.replace("http://", "ws://", 1) + "/ws?clientId=" + self.client_id
        deadline = time.monotonic() + timeout
        # connect first: the server only sends a prompt's events to sockets open at that moment
        ws = websocket.create_connection(ws_url, timeout=timeout)
        messages = []
        try:
            status, body = self.post_prompt(graph, prompt_id=prompt_id)
            if status != 200:
                raise PromptRejected(status, body)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"prompt {prompt_id} not finished after {timeout:.0f} s; "
                                       f"last messages: {messages[-5:]}\n--- server log tail ---\n{self._log_tail()}")
                ws.settimeout(remaining)
                try:
                    raw = ws.recv()
                except websocket.WebSocketTimeoutException:
                    continue
                except (websocket.WebSocketException, OSError) as e:
                    raise ServerError(f"websocket lost while running prompt {prompt_id}: {e!r}\n"
                                      f"--- server log tail ---\n{self._log_tail()}") from e
                if not isinstance(raw, str):
                    continue  # binary preview frames
                msg = json.loads(raw)
                mtype, data = msg.get("type"), msg.get("data") or {}
                if data.get("prompt_id") != prompt_id:
                    continue
                messages.append((mtype, data))
                if on_message is not None:
                    on_message(mtype, data)
                if mtype == "executing" and data.get("node") is None:
                    break
        finally:
            ws.close()
        entry = self.wait(prompt_id, timeout=max(1.0, deadline - time.monotonic()))
        result = RunResult(prompt_id=prompt_id, history=entry, messages=messages)
        if check and not result.ok:
            raise PromptFailed(result)
        return result


class ComfyServer:
    """One ComfyUI server process on a private base directory."""

    def __init__(self, base_dir: Path, models_dir: Path, log_path: Path, comfyui_path: Path | None = None,
                 python: str | None = None, custom_nodes: dict | None = None, extra_args=(),
                 front_end_root: Path | None = None):
        self.base_dir = Path(base_dir)
        self.models_dir = Path(models_dir)
        self.log_path = Path(log_path)
        self.comfyui_path = Path(comfyui_path or default_comfyui_path())
        self.python = python or os.environ.get("COMFYUI_PYTHON") or sys.executable
        self.custom_nodes = custom_nodes if custom_nodes is not None else {
            PACK_DIR_NAME: REPO_ROOT, "comfy_test_nodes": TEST_NODES_DIR}
        self.extra_args = list(extra_args)
        # another frontend than the host's pinned package (--front-end-root: a folder with index.html)
        self.front_end_root = Path(front_end_root) if front_end_root else None
        self.port = None
        self.proc = None
        self.client = None
        self.frontend = "comfyui-frontend-package"
        self.startup_s = None

    def prepare(self) -> None:
        if not (self.comfyui_path / "main.py").is_file():
            raise ServerError(f"no ComfyUI at {self.comfyui_path}: run scripts/setup_env.sh or set COMFYUI_PATH")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        (self.base_dir / "models").symlink_to(self.models_dir, target_is_directory=True)
        nodes_dir = self.base_dir / "custom_nodes"
        nodes_dir.mkdir()
        for name, target in self.custom_nodes.items():
            (nodes_dir / name).symlink_to(Path(target).resolve(), target_is_directory=True)

    def _command(self, front_end_root: Path | None) -> list:
        cmd = [self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--base-directory", str(self.base_dir), "--disable-api-nodes",
               "--database-url", "sqlite:///:memory:"]
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
            log.write(f"\n$ {' '.join(self._command(front_end_root))}\n".encode())
            log.flush()
            # own session: stopping it never signals the test runner's process group
            self.proc = subprocess.Popen(self._command(front_end_root), cwd=self.comfyui_path, env=env,
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
                if self.client._request("GET", "/object_info", timeout=10.0)[0] == 200:
                    return True
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
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

    def start(self, timeout: float = 120.0) -> ComfyClient:
        t0 = time.monotonic()
        self.prepare()
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
            # the frontend package is missing or broken: a folder with an index.html will do
            stub = self.base_dir / "frontend_stub"
            stub.mkdir(exist_ok=True)
            (stub / "index.html").write_text("<html><body>frontend stub for tests</body></html>\n")
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
        shutil.rmtree(self.base_dir, ignore_errors=True)


# -- API-format graphs ------------------------------------------------------------------------

UNET_A = "tiny_sd15_unet_a.safetensors"
UNET_B = "tiny_sd15_unet_b.safetensors"
CKPT_A = "tiny_sd15_a.safetensors"
TINY_VAE = "tiny_taesd_vae.safetensors"


def node(class_type: str, **inputs) -> dict:
    return {"class_type": class_type, "inputs": inputs}


def sample_graph(*, unet: str = UNET_A, seed: int = 42, steps: int = 4, cfg: float = 2.0,
                 sampler_name: str = "euler", scheduler: str = "normal", denoise: float = 1.0,
                 cond_seed: int = 0, width: int = 64, height: int = 64, batch: int = 1) -> dict:
    """UNETLoader -> KSampler (positive AMDMTest_Conditioning(cond_seed), negative all-zero) on
    an EmptyLatentImage -> AMDMTest_LatentStats (node "7"). Same defaults as the host layer's
    stock_ksampler(model_a) with make_cond(0) / make_cond(0.0)."""
    return {
        "1": node("UNETLoader", unet_name=unet, weight_dtype="default"),
        "2": node("AMDMTest_Conditioning", seed=cond_seed, scale=1.0),
        "3": node("AMDMTest_Conditioning", seed=0, scale=0.0),
        "4": node("EmptyLatentImage", width=width, height=height, batch_size=batch),
        "5": node("KSampler", model=["1", 0], positive=["2", 0], negative=["3", 0], latent_image=["4", 0],
                  seed=seed, steps=steps, cfg=cfg, sampler_name=sampler_name, scheduler=scheduler,
                  denoise=denoise),
        "7": node("AMDMTest_LatentStats", samples=["5", 0]),
    }


def decode_graph(*, seed: int = 42, steps: int = 4, prefix: str = "amdm_smoke") -> dict:
    """CheckpointLoaderSimple(tiny_sd15_a: UNet + TAESD, no CLIP) -> KSampler -> VAEDecode, once
    with the checkpoint's VAE (SaveImage "7") and once with VAELoader(tiny_taesd_vae) (SaveImage "10")."""
    return {
        "1": node("CheckpointLoaderSimple", ckpt_name=CKPT_A),
        "2": node("AMDMTest_Conditioning", seed=0, scale=1.0),
        "3": node("AMDMTest_Conditioning", seed=0, scale=0.0),
        "4": node("EmptyLatentImage", width=64, height=64, batch_size=1),
        "5": node("KSampler", model=["1", 0], positive=["2", 0], negative=["3", 0], latent_image=["4", 0],
                  seed=seed, steps=steps, cfg=2.0, sampler_name="euler", scheduler="normal", denoise=1.0),
        "6": node("VAEDecode", samples=["5", 0], vae=["1", 2]),
        "7": node("SaveImage", images=["6", 0], filename_prefix=prefix + "_ckpt"),
        "8": node("VAELoader", vae_name=TINY_VAE),
        "9": node("VAEDecode", samples=["5", 0], vae=["8", 0]),
        "10": node("SaveImage", images=["9", 0], filename_prefix=prefix + "_vae"),
    }
