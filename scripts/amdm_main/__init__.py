"""The main command's modules (scripts/main.py): demo models, a small ComfyUI API client, a local
server launcher, UI <-> API workflow conversion and the run itself. Plain Python + urllib +
websocket-client + Pillow; torch/ComfyUI are only imported where demo models are generated."""
