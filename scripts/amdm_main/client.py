"""A small ComfyUI API-mode client (stdlib urllib + websocket-client): POST /prompt, follow the
prompt on the websocket, read /history and /view, /interrupt."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid


class ClientError(RuntimeError):
    """One-line, user-facing problem talking to a server."""


class PromptRejected(ClientError):
    def __init__(self, status: int, body):
        self.status, self.body = status, body
        super().__init__(f"the server rejected the workflow (HTTP {status}): {describe_rejection(body)}")


class PromptFailed(ClientError):
    def __init__(self, prompt_id: str, error: dict | None, history: dict | None):
        self.prompt_id, self.error, self.history = prompt_id, error or {}, history or {}
        e = self.error
        what = e.get("exception_message") or self.history.get("status", {}).get("status_str") or "unknown error"
        node = f"node {e.get('node_id')} ({e.get('node_type')})" if e.get("node_type") else "the prompt"
        super().__init__(f"{node} failed: {str(what).strip().splitlines()[0] if str(what).strip() else what}")


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


class Client:
    def __init__(self, base_url: str, timeout: float = 30.0):
        url = base_url.rstrip("/")
        if "://" not in url:
            url = "http://" + url
        self.base_url = url
        self.timeout = timeout
        self.client_id = str(uuid.uuid4())

    # -- HTTP -------------------------------------------------------------------------------
    def request(self, method: str, path: str, body=None, *, timeout: float | None = None):
        """(HTTP status, response bytes); body, when given, is sent as JSON."""
        data = None if body is None else json.dumps(body).encode()
        headers = {} if body is None else {"Content-Type": "application/json"}
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ClientError(f"cannot reach ComfyUI at {self.base_url}: {reason}") from None

    def get_json(self, path: str, timeout: float | None = None):
        status, raw = self.request("GET", path, timeout=timeout)
        if status != 200:
            raise ClientError(f"GET {path} -> HTTP {status}")
        return json.loads(raw)

    def check_reachable(self) -> dict:
        """/system_stats of the server; ClientError with a one-line message if it is not a ComfyUI."""
        try:
            stats = self.get_json("/system_stats", timeout=10)
        except json.JSONDecodeError:
            raise ClientError(f"{self.base_url} answers, but not like a ComfyUI server (no JSON /system_stats)") from None
        except ClientError as e:
            if "HTTP" in str(e):
                raise ClientError(f"{self.base_url} answers, but not like a ComfyUI server ({e})") from None
            raise
        if not isinstance(stats, dict) or "system" not in stats:
            raise ClientError(f"{self.base_url} answers, but not like a ComfyUI server")
        return stats

    def object_info(self, cls: str | None = None):
        if cls is None:
            return self.get_json("/object_info", timeout=120)
        return self.get_json("/object_info/" + urllib.parse.quote(cls)).get(cls)

    def history(self, prompt_id: str) -> dict | None:
        return self.get_json("/history/" + prompt_id).get(prompt_id)

    def view(self, filename: str, subfolder: str = "", type: str = "output") -> bytes:
        q = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": type})
        status, raw = self.request("GET", "/view?" + q)
        if status != 200:
            raise ClientError(f"GET /view?{q} -> HTTP {status}")
        return raw

    def interrupt(self) -> int:
        return self.request("POST", "/interrupt", {})[0]

    # -- a prompt, followed on the websocket -----------------------------------------------------
    def run(self, prompt: dict, *, on_message=None, timeout: float = 3600.0) -> tuple[dict, list]:
        """POST the API prompt and follow it until the server says it is done. on_message(type, data)
        sees this prompt's messages (progress, executing, executed, ...). Returns (history entry,
        messages). PromptRejected for an HTTP 400, PromptFailed for an execution error/interrupt."""
        import websocket  # websocket-client; imported here so --help works without it

        ws_url = self.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        ws_url += "/ws?clientId=" + self.client_id
        try:
            ws = websocket.create_connection(ws_url, timeout=30)
        except (OSError, websocket.WebSocketException) as e:
            raise ClientError(f"cannot open the websocket {ws_url}: {e}") from None
        prompt_id = str(uuid.uuid4())   # hosts >= 0.3x accept only the canonical hyphenated form
        messages, error = [], None
        deadline = time.monotonic() + timeout
        try:
            status, raw = self.request("POST", "/prompt", {"prompt": prompt, "client_id": self.client_id,
                                                          "prompt_id": prompt_id})
            try:
                body = json.loads(raw) if raw else {}
            except json.JSONDecodeError:
                body = {"raw": raw.decode(errors="replace")}
            if status != 200:
                raise PromptRejected(status, body)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ClientError(f"prompt {prompt_id} not finished after {timeout:.0f} s")
                ws.settimeout(min(remaining, 5.0))
                try:
                    msg = ws.recv()
                except websocket.WebSocketTimeoutException:
                    entry = self.history(prompt_id)   # finished while we were not listening?
                    if entry is not None and entry.get("status", {}).get("completed") is not None:
                        if entry["status"].get("status_str") in ("success", "error"):
                            break
                    continue
                except (OSError, websocket.WebSocketException) as e:
                    raise ClientError(f"lost the connection to {self.base_url} while running: {e}") from None
                if not isinstance(msg, str):
                    continue  # binary preview frames
                m = json.loads(msg)
                mtype, data = m.get("type"), m.get("data") or {}
                if data.get("prompt_id") != prompt_id:
                    continue
                messages.append((mtype, data))
                if on_message is not None:
                    on_message(mtype, data)
                if mtype in ("execution_error", "execution_interrupted"):
                    error = dict(data, interrupted=mtype == "execution_interrupted")
                if mtype == "executing" and data.get("node") is None:
                    break
                if mtype in ("execution_success", "execution_error", "execution_interrupted"):
                    break
        finally:
            ws.close()
        entry = None
        for _ in range(200):
            entry = self.history(prompt_id)
            if entry is not None:
                break
            time.sleep(0.05)
        if error is not None or entry is None or entry.get("status", {}).get("status_str") != "success":
            raise PromptFailed(prompt_id, error, entry)
        return entry, messages
