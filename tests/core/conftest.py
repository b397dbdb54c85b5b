import os
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # appended, never in front of a ComfyUI path (our nodes/ vs its nodes.py)

# "ci" keeps the suite fast; "full" is the long fuzzing run (HYPOTHESIS_PROFILE=full).
settings.register_profile("ci", deadline=None, max_examples=60)
settings.register_profile("full", deadline=None, max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)
