"""The main command's progress display: a bar per node from the websocket's `progress` messages
(one line per quarter when the stream is not a terminal)."""
from __future__ import annotations

import sys


class Progress:
    """A terminal progress bar per node from the websocket's `progress` messages."""

    def __init__(self, prompt: dict, stream=sys.stderr, enabled=True):
        self.prompt, self.stream, self.enabled = prompt, stream, enabled
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.node, self.last_quarter, self.line_open = None, -1, False

    def title(self, node_id) -> str:
        node = self.prompt.get(str(node_id), {})
        return node.get("_meta", {}).get("title") or node.get("class_type", str(node_id))

    def __call__(self, mtype, data):
        if not self.enabled:
            return
        if mtype == "executing" and data.get("node") is not None and self.tty:
            self._write(f"\r\033[K  running {self.title(data['node'])}")
        elif mtype == "progress":
            node, value, total = data.get("node"), data.get("value", 0), max(1, data.get("max", 1))
            if node != self.node:
                self.node, self.last_quarter = node, -1
                if self.tty and self.line_open:
                    self._write("\n")
            frac = min(1.0, value / total)
            if self.tty:
                width = 30
                fill = int(round(frac * width))
                self._write(f"\r\033[K  {self.title(node)[:28]:<28} [{'#' * fill}{'.' * (width - fill)}] "
                            f"{value}/{total}")
            else:
                quarter = int(frac * 4)
                if quarter > self.last_quarter:
                    self.last_quarter = quarter
                    self.stream.write(f"  {self.title(node)}: {value}/{total}\n")
                    self.stream.flush()
        elif mtype in ("execution_success", "execution_error", "execution_interrupted") and self.line_open:
            self._write("\n")
            self.line_open = False

    def _write(self, s):
        self.stream.write(s)
        self.stream.flush()
        self.line_open = not s.endswith("\n")

    def close(self):
        if self.line_open and self.enabled:
            self._write("\n")
