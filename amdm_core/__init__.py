"""amdm_core: host-free torch implementation of AMDM (Aggregation of Multiple Diffusion Models,
arXiv 2410.01262). Imports torch only; never ComfyUI. The names below are the stable API."""
from .aggregate import AGGREGATION_MODES, batch_norm, slerp2, spherical_aggregate
from .deviation import DEVIATION_MODES, deviation_step
from .loop import Deviation, Trace, active_members, amdm_sample
from .presets import FAITHFUL, PRESETS, REFERENCE_COMPATIBLE, Preset
from .schedule import DiscreteSchedule, code_exact_coefficients, code_exact_mu
from .steppers import (EulerAncestralStepper, EulerStepper, StepResult, Stepper, ancestral_sigmas,
                       seeded_noise)
from .units import (REFERENCE_ELEMENTS, STEP_SCALES, elements_per_sample, from_vp, step_from_reference,
                    step_length, step_to_absolute, to_vp, vp_scale)
from .weights import nested_weights, omegas_from_weights, reference_three_member_weights, spherical_weights
from .window import EMPTY_WINDOW, StepWindow, window_from_sigmas, window_from_steps

__all__ = [
    "AGGREGATION_MODES", "DEVIATION_MODES", "Deviation", "DiscreteSchedule", "EMPTY_WINDOW",
    "EulerAncestralStepper", "EulerStepper", "FAITHFUL", "PRESETS", "Preset", "REFERENCE_COMPATIBLE",
    "REFERENCE_ELEMENTS", "STEP_SCALES", "StepResult", "StepWindow", "Stepper", "Trace", "active_members",
    "amdm_sample", "ancestral_sigmas", "batch_norm", "code_exact_coefficients", "code_exact_mu", "deviation_step",
    "elements_per_sample", "from_vp", "nested_weights", "omegas_from_weights", "reference_three_member_weights",
    "seeded_noise", "slerp2", "spherical_aggregate", "spherical_weights", "step_from_reference", "step_length",
    "step_to_absolute", "to_vp", "vp_scale", "window_from_sigmas", "window_from_steps",
]
