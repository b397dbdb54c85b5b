"""The two documented presets. Every paper-vs-code choice is listed in README "Faithfulness"."""
from __future__ import annotations

from dataclasses import dataclass

from .loop import Deviation
from .units import step_from_reference

from .policies import INITIAL_NOISE_POLICIES  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class Preset:
    name: str
    initial_noise: str        # "independent": member k starts from its own draw (reference code)
    mode: str                 # aggregation operator
    deviation: Deviation
    normalize_weights: bool   # raw member weights -> unit L2 norm
    step_noise: str           # stochastic samplers: see amdm_sample


# The paper's per-step semantics: aggregate, then one fixed-length step of the specified model
# toward its own next-step mean; helpers keep their own trajectories.
FAITHFUL = Preset(
    name="faithful", initial_noise="independent", mode="spherical",
    deviation=Deviation(step=step_from_reference(45), mode="absolute", target="faithful", members="base"),
    normalize_weights=True, step_noise="independent")

# The reference code's arithmetic: every member pulled toward its own one-step-lagged mu with an
# absolute step, from independent initial noise, paper weights as given. The code's p is a fixed
# distance whatever the resolution, hence the per_sqrt_reference unit: p = 45 at every latent size.
REFERENCE_COMPATIBLE = Preset(
    name="reference-compatible", initial_noise="independent", mode="spherical",
    deviation=Deviation(step=step_from_reference(45), mode="absolute", target="reference", members="all",
                        scale="per_sqrt_reference"),
    normalize_weights=False, step_noise="independent")

PRESETS = {p.name: p for p in (FAITHFUL, REFERENCE_COMPATIBLE)}
