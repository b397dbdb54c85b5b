"""One ComfyUI API-mode client for the main command, the tests and the benchmarks (stdlib urllib +
websocket-client): POST /prompt, follow the prompt on the websocket, read /history and /view,
/interrupt. Prompt ids are canonical hyphenated UUIDs (hosts since 0.3x refuse anything else).
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field


class ClientError(RuntimeError):
    """One-line, user-facing problem talking to a server."""


class ServerError(ClientError):
    """The server process or its connection failed (not the prompt)."""


class PromptRejected(ClientError):
    """POST /prompt answered with a non-200 status (prompt validation)."""

    def __init__(self, status: int, body):
        self.status, self.body = status, body
        super().__init__(f"the server rejected the workflow (HTTP {status}): {describe_rejection(body)}")


class PromptFailed(ClientError):
    """The prompt ran but ended in execution_error / execution_interrupted."""

    def __init__(self, result: "RunResult"):
        self.result = result
        e = result.error or {}
        what = str(e.get("exception_message") or result.status_str or "unknown error").strip()
        node = f"node {e.get('node_id')} ({e.get('node_type')})" if e.get("node_type") else "the prompt"
        trace = "".join(e.get("traceback") or [])
        super().__init__(f"{node} failed: {what.splitlines()[0] if what else what}" + (f"\n{trace}" if trace else ""))

    @property
    def prompt_id(self) -> str:
        return self.result.prompt_id

    @property
    def error(self) -> dict:
        return self.result.error or {}


def describe_rejection(body) -> str:
    if not isinstance(body, dict):
        return str(body)[:500]
    parts = []
    err = body.get("error")
    if isinstance(err, dict):
        parts.append(err.get("message", "") + (f" ({err.get('details')})" if err.get("details") else ""))
    for nid, ne in (body.get("node_errors") or {}).items():
        for e in ne.get("errors", []):
            parts.append(f"node {nid} ({ne.get('class_type')}): {e.get('message')}: {e.get('details')}")
    return "; ".join(p for p in parts if p) or json.dumps(body)[:500]


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
        url = base_url.rstrip("/")
        self.base_url = url if "://" in url else "http://" + url
        self.client_id = client_id or str(uuid.uuid4())
        self._log_tail = log_tail or (lambda: "")
        self.server = None      # the ComfyServer that started it, if any

    # -- plain HTTP ------------------------------------------------------------------------
    def request(self, method: str, path: str, body=None, timeout: float = 30.0):
        """(HTTP status, response bytes); body, when given, is sent as JSON. ClientError when the
        server cannot be reached at all."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ClientError(f"cannot reach ComfyUI at {self.base_url}: {reason}") from None

    def json(self, method: str, path: str, body=None, timeout: float = 30.0):
        """(HTTP status, decoded JSON or {"raw": text})."""
        status, raw = self.request(method, path, body, timeout)
        try:
            payload = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            payload = {"raw": raw.decode(errors="replace")}
        return status, payload

    def get_json(self, path: str, timeout: float = 30.0):
        status, payload = self.json("GET", path, timeout=timeout)
        if status != 200:
            raise ClientError(f"GET {path} -> HTTP {status}")
        return payload

    def check_reachable(self) -> dict:
        """/system_stats of the server; ClientError with a one-line message if it is not a ComfyUI."""
        try:
            stats = self.get_json("/system_stats", timeout=10)
        except ClientError as e:
            if "cannot reach" in str(e):
                raise
            raise ClientError(f"{self.base_url} answers, but not like a ComfyUI server ({e})") from None
        if not isinstance(stats, dict) or "system" not in stats:
            raise ClientError(f"{self.base_url} answers, but not like a ComfyUI server")
        return stats

    def object_info(self, cls: str | None = None) -> dict | None:
        """All node schemas, or one class's schema (None if the server does not know it)."""
        if cls is None:
            return self.json("GET", "/object_info", timeout=120)[1]
        return (self.json("GET", "/object_info/" + urllib.parse.quote(cls))[1] or {}).get(cls)

    def post_prompt(self, graph: dict, prompt_id: str | None = None) -> tuple[int, dict]:
        body = {"prompt": graph, "client_id": self.client_id}
        if prompt_id:
            body["prompt_id"] = prompt_id
        return self.json("POST", "/prompt", body)

    def history(self, prompt_id: str) -> dict | None:
        return (self.json("GET", "/history/" + prompt_id)[1] or {}).get(prompt_id)

    def wait(self, prompt_id: str, timeout: float = 60.0) -> dict:
        """Poll /history until the prompt has a finished entry."""
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
        status, raw = self.request("GET", "/view?" + query)
        if status != 200:
            raise ServerError(f"GET /view?{query} -> HTTP {status}")
        return raw

    def interrupt(self, prompt_id: str | None = None) -> int:
        return self.request("POST", "/interrupt", {"prompt_id": prompt_id} if prompt_id else {})[0]

    def alive(self) -> bool:
        try:
            return self.request("GET", "/queue", timeout=5.0)[0] == 200
        except ClientError:
            return False

    # -- a prompt, followed on the websocket -------------------------------------------------
    def run(self, graph: dict, timeout: float = 60.0, check: bool = True, on_message=None) -> RunResult:
        """POST the graph and follow it on the websocket until the server says it is done; then read
        /history. PromptRejected on a non-200 answer, PromptFailed on an error or interrupt when
        check. on_message(type, data) sees each message of this prompt (e.g. to interrupt)."""
        import websocket  # websocket-client; imported here so the main command's --help works without it

        prompt_id = str(uuid.uuid4())
        ws_url = self.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        ws_url += "/ws?clientId=" + self.client_id
        deadline = time.monotonic() + timeout
        # connect first: the server only sends a prompt's events to sockets open at that moment
        try:
            ws = websocket.create_connection(ws_url, timeout=30)
        except (OSError, websocket.WebSocketException) as e:
            raise ServerError(f"cannot open the websocket {ws_url}: {e}") from None
        messages = []
        try:
            status, body = self.post_prompt(graph, prompt_id=prompt_id)
            if status != 200:
                raise PromptRejected(status, body)
            while not self._follow(ws, prompt_id, deadline, messages, on_message):
                pass
        finally:
            ws.close()
        entry = self.wait(prompt_id, timeout=max(1.0, deadline - time.monotonic()))
        result = RunResult(prompt_id=prompt_id, history=entry, messages=messages)
        if check and not result.ok:
            raise PromptFailed(result)
        return result

    def _follow(self, ws, prompt_id, deadline, messages, on_message) -> bool:
        """Read one websocket message; True once the prompt is done."""
        import websocket

        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"prompt {prompt_id} not finished; last messages: {messages[-5:]}\n"
                               f"--- server log tail ---\n{self._log_tail()}")
        ws.settimeout(min(remaining, 5.0))
        try:
            raw = ws.recv()
        except websocket.WebSocketTimeoutException:     # finished while we were not listening?
            entry = self.history(prompt_id)
            return bool(entry and entry.get("status", {}).get("status_str") in ("success", "error"))
        except (websocket.WebSocketException, OSError) as e:
            raise ServerError(f"lost the connection to {self.base_url} while running prompt {prompt_id}: {e!r}\n"
                              f"--- server log tail ---\n{self._log_tail()}") from e
        if not isinstance(raw, str):
            return False  # binary preview frames
        msg = json.loads(raw)
        mtype, data = msg.get("type"), msg.get("data") or {}
        if data.get("prompt_id") != prompt_id:
            return False
        messages.append((mtype, data))
        if on_message is not None:
            on_message(mtype, data)
        return mtype == "executing" and data.get("node") is None
