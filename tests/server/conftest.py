"""Server layer: a real ComfyUI (main.py) on a private base directory with the tiny models, the
pack (custom_nodes/amdm_pack -> repo root) and the fixture pack tests/fixtures/comfy_test_nodes."""
import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)  # for `import harness` in tests; appended so it can shadow nothing
import harness  # noqa: E402


@pytest.fixture(scope="session")
def comfy_server(tiny_model_set, tmp_path_factory):
    """A started ComfyUI server; yields its ComfyClient (.server is the ComfyServer: base_dir,
    log_path, log_tail(), startup_s, frontend). One per session; SIGTERM and cleanup at the end."""
    server = harness.ComfyServer(
        base_dir=tmp_path_factory.mktemp("comfy_base"),
        models_dir=tiny_model_set.models_dir,
        log_path=tmp_path_factory.mktemp("comfy_log") / "server.log",
    )
    try:
        client = server.start()
        yield client
    finally:
        server.cleanup()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the server log tail to failing tests that used the server."""
    report = yield
    if report.failed and "comfy_server" in getattr(item, "fixturenames", ()):
        server = getattr(item.funcargs.get("comfy_server"), "server", None)
        if server is not None:
            report.sections.append((f"ComfyUI server log (tail of {server.log_path})", server.log_tail(80)))
    return report
