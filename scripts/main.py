"""The README's main command (scripts/run.sh calls it after scripts/setup_env.sh).

Runs the shipped two-model AMDM workflow through a headless ComfyUI in API mode and writes the AMDM
image, the base-model-alone image with the same seed, a side-by-side comparison and the run summary
to output/amdm_demo/. `python scripts/main.py --help` lists the options."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1]))   # devtools; appended: the repo's nodes/ shadows nothing

from amdm_main.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
