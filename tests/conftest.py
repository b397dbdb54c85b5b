import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Appended, never inserted in front: the repo's nodes/ package would shadow ComfyUI's nodes.py.
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))

from devtools import tiny_models  # noqa: E402
from devtools.host import load_file_module  # noqa: E402


class _RepoRootIsNotATestPackage:
    """The repo root is the node pack, so it has an __init__.py. pytest would collect it as a
    Package and import that __init__.py (as module "main", for xunit setup_module) before any test
    under it runs: a second copy of the pack, imported outside ComfyUI's loader. Collect the root
    as a plain directory instead. Registered as a plugin because conftest hooks only see paths
    at or below their own directory."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_collect_directory(self, path, parent):
        if Path(path) == REPO_ROOT:
            return pytest.Dir.from_parent(parent, path=path)
        return None


def pytest_configure(config):
    config.pluginmanager.register(_RepoRootIsNotATestPackage(), "amdm-repo-root-is-not-a-test-package")


@pytest.fixture(scope="session")
def tiny_model_set(tmp_path_factory):
    """Tiny SD1.5-format models (devtools/tiny_models.py), generated once per session and shared by
    the in-process host layer and the server layer."""
    return tiny_models.make_models(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="session")
def reference_code():
    """tests/reference_code.py: the independent re-implementation of the reference code's arithmetic."""
    return load_file_module("amdm_test_reference_code", REPO_ROOT / "tests" / "reference_code.py")
