"""amdm_core: host-free torch implementation of AMDM (Aggregation of Multiple Diffusion Models,
arXiv 2410.01262). Imports torch only; never ComfyUI. The names below are the stable API."""
from .aggregate import batch_norm, slerp2, spherical_aggregate
from .compose import compose_predictions
from .deviation import deviation_step
from .loop import Deviation, Trace, active_members, amdm_sample
from .policies import (AGGREGATION_MODES, COMPOSE_MODES, DEVIATION_MODES, INITIAL_NOISE_POLICIES, MU_TARGETS,
                       NODE_STEP_UNITS, OPTIMISED_MEMBERS, RANGE_UNITS, STEP_NOISE_POLICIES, WINDOW_UNITS,
                       check_initial_noise, check_one_of, check_span, check_step, check_step_noise,
                       helper_initial_noise, planned_member_steps, step_seed)
from .presets import FAITHFUL, PRESETS, REFERENCE_COMPATIBLE, Preset
from .ranges import ALWAYS, NoiseRange, steps_in_range
from .schedule import DiscreteSchedule, code_exact_coefficients, code_exact_mu
from .steppers import (EulerAncestralStepper, EulerStepper, StepResult, Stepper, ancestral_sigmas,
                       seeded_noise)
from .units import (REFERENCE_ELEMENTS, STEP_SCALES, elements_per_sample, from_vp, step_from_reference,
                    step_length, step_to_absolute, to_vp, vp_scale)
from .weights import nested_weights, omegas_from_weights, reference_three_member_weights, spherical_weights
from .window import EMPTY_WINDOW, StepWindow, window_from_sigmas, window_from_steps

__all__ = [
    "ALWAYS", "COMPOSE_MODES", "INITIAL_NOISE_POLICIES", "MU_TARGETS", "NODE_STEP_UNITS", "NoiseRange",
    "OPTIMISED_MEMBERS", "RANGE_UNITS", "STEP_NOISE_POLICIES", "WINDOW_UNITS", "check_initial_noise",
    "check_one_of", "check_span", "check_step", "check_step_noise", "compose_predictions",
    "helper_initial_noise", "planned_member_steps", "step_seed", "steps_in_range",
    "AGGREGATION_MODES", "DEVIATION_MODES", "Deviation", "DiscreteSchedule", "EMPTY_WINDOW",
    "EulerAncestralStepper", "EulerStepper", "FAITHFUL", "PRESETS", "Preset", "REFERENCE_COMPATIBLE",
    "REFERENCE_ELEMENTS", "STEP_SCALES", "StepResult", "StepWindow", "Stepper", "Trace", "active_members",
    "amdm_sample", "ancestral_sigmas", "batch_norm", "code_exact_coefficients", "code_exact_mu", "deviation_step",
    "elements_per_sample", "from_vp", "nested_weights", "omegas_from_weights", "reference_three_member_weights",
    "seeded_noise", "slerp2", "spherical_aggregate", "spherical_weights", "step_from_reference", "step_length",
    "step_to_absolute", "to_vp", "vp_scale", "window_from_sigmas", "window_from_steps",
]

# per-family state <-> VP units (eps/v, flow, EDM, Cosmos rflow)
from .policies import STATE_FAMILIES  # noqa: E402
from .state_units import EPS_UNITS, StateUnits, edm_units, eps_units, flow_units, rflow_units  # noqa: E402

__all__ += ["EPS_UNITS", "STATE_FAMILIES", "StateUnits", "edm_units", "eps_units", "flow_units", "rflow_units"]

# cooperation modes beside AMDM: model guidance (autoguidance) and step-count-invariant AMDM weights
from .guidance import autoguidance, autoguidance_cfg, guidance_evaluations, guidance_needs, guide  # noqa: E402
from .policies import GUIDANCE_FORMS, SUPERPOSE_MODES  # noqa: E402
from .rate import (RatePlan, rate_for_share, rate_plan, rate_step_weights, retained_share,  # noqa: E402
                   step_log_spans, window_covering)

__all__ += ["GUIDANCE_FORMS", "SUPERPOSE_MODES", "autoguidance", "autoguidance_cfg", "guidance_evaluations",
            "guidance_needs", "guide", "RatePlan", "rate_for_share", "rate_plan", "rate_step_weights", "retained_share", "step_log_spans",
            "window_covering"]

# superposition (SuperDiff OR / AND) with its own reverse-SDE stepper, and the flow <-> k-space map it needs
from .superpose import KSpace, SuperposeTrace, k_space, superpose_evaluations, superpose_sample  # noqa: E402

__all__ += ["KSpace", "SuperposeTrace", "k_space", "superpose_evaluations", "superpose_sample"]
