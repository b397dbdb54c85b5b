"""Members (model + conditioning + cfg + weight) and the checks that they can be aggregated.

Everything here reads the host objects but never changes them: a Member holds the MODEL and
CONDITIONING objects the user connected, and the guider works on clones.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import comfy.model_sampling

from .settings import RangeSettings

MAX_MEMBERS = 8


@dataclass(frozen=True)
class Member:
    model: object          # comfy.model_patcher.ModelPatcher
    positive: list
    negative: list
    cfg: float
    weight: float
    label: str             # how errors and the summary name this member, e.g. "member 2 (node #12)"
    noise_range: RangeSettings = RangeSettings()   # when the member is active (default: always)


def member_label(index: int, node_id=None) -> str:
    """Member 1 is the base (the Multi-Model Sampler's own model input); helpers count from 2."""
    name = "base member" if index == 0 else f"member {index + 1}"
    return f"{name} (node #{node_id})" if node_id not in (None, "") else name


class MemberError(ValueError):
    """Raised for a member that cannot take part; the message names it and says what to do."""


def _number(label: str, name: str, value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise MemberError(f"{label}: '{name}' = {value!r} is not a number.") from None


def check_member_values(label: str, model, positive, negative, cfg: float, weight: float,
                        weight_name: str = "weight") -> None:
    if model is None or not hasattr(model, "get_model_object"):
        raise MemberError(f"{label}: 'model' is not a MODEL; connect a model loader's MODEL output.")
    for name, cond in (("positive", positive), ("negative", negative)):
        if not isinstance(cond, list) or len(cond) == 0:
            raise MemberError(f"{label}: '{name}' conditioning is empty or missing; connect a CLIP Text Encode "
                              f"(or other CONDITIONING) output to '{name}'.")
    c = _number(label, "cfg", cfg)
    if not math.isfinite(c) or c < 0:
        raise MemberError(f"{label}: 'cfg' = {cfg} must be a finite number >= 0.")
    w = _number(label, weight_name, weight)
    if not math.isfinite(w) or w < 0:
        raise MemberError(f"{label}: '{weight_name}' = {weight} must be a finite number >= 0 "
                          f"(0 switches the member off).")


FLOW_CLASSES = tuple(getattr(comfy.model_sampling, n) for n in ("CONST", "COSMOS_RFLOW")
                     if hasattr(comfy.model_sampling, n))


def sampling_family(model_sampling) -> str:
    """The x-convention: 'flow' (x = (1-s) x0 + s eps) or 'vp' (x = x0 + s eps; eps/v/x0 predictions)."""
    return "flow" if isinstance(model_sampling, FLOW_CLASSES) else "vp"


def describe_latent(lf) -> str:
    return (f"{type(lf).__name__} latent ({getattr(lf, 'latent_channels', '?')} channels, "
            f"scale {getattr(lf, 'scale_factor', '?')})")


def check_compatible(members: Sequence[Member]) -> None:
    """Members must share latent space, x-convention family and noise range (checked before loading)."""
    if len(members) < 2:
        raise MemberError("Multi-Model Sampler needs at least 2 members: connect a Multi-Model Member to 'members'.")
    if len(members) > MAX_MEMBERS:
        raise MemberError(f"{len(members)} members connected; at most {MAX_MEMBERS} are supported "
                          f"(the base plus {MAX_MEMBERS - 1} Multi-Model Member nodes). Remove "
                          f"{len(members) - MAX_MEMBERS} from the chain.")
    base = members[0]
    b_lf = base.model.get_model_object("latent_format")
    b_ms = base.model.get_model_object("model_sampling")
    for m in members[1:]:
        lf = m.model.get_model_object("latent_format")
        same_latent = (type(lf) is type(b_lf) and lf.latent_channels == b_lf.latent_channels
                       and getattr(lf, "latent_dimensions", 2) == getattr(b_lf, "latent_dimensions", 2)
                       and getattr(lf, "scale_factor", None) == getattr(b_lf, "scale_factor", None))
        if not same_latent:
            raise MemberError(f"{m.label} has a {describe_latent(lf)}, the {base.label} a {describe_latent(b_lf)}: "
                              f"different VAE latent spaces cannot be aggregated. Use models of one family "
                              f"(e.g. all SD1.5) as members.")
        ms = m.model.get_model_object("model_sampling")
        if sampling_family(ms) != sampling_family(b_ms):
            raise MemberError(f"{m.label} is a {sampling_family(ms)}-type model ({type(ms).__name__}), the "
                              f"{base.label} a {sampling_family(b_ms)}-type model: their noisy states mean "
                              f"different things and cannot be aggregated.")
        for name in ("sigma_min", "sigma_max"):
            a, b = float(getattr(ms, name)), float(getattr(b_ms, name))
            if not math.isclose(a, b, rel_tol=1e-3):
                raise MemberError(f"{m.label} has {name} {a:.4g}, the {base.label} {b:.4g}: members must share one "
                                  f"noise schedule (check ModelSampling* nodes on one of them).")
        for o in members:
            # object patches (model_sampling, latent_format...) live on the one shared model object
            if o is not m and m.model.is_clone(o.model) and m.model.object_patches.keys() != o.model.object_patches.keys():
                raise MemberError(f"{m.label} and {o.label} are copies of one loaded checkpoint with different "
                                  f"object patches (e.g. a ModelSampling node on one of them). Load the "
                                  f"checkpoint a second time for one of them.")
    if sampling_family(b_ms) == "flow":
        raise MemberError(f"the {base.label} is a flow-matching model ({type(b_ms).__name__}); AMDM's VP-unit "
                          f"aggregation is defined for eps/v-prediction models (SD1.x, SD2, SDXL) only.")


def member_chain(value, input_name: str, allow_none: bool = True) -> tuple:
    """A member chain socket value: a tuple of Members, or None where nothing need be connected."""
    if value is None and allow_none:
        return ()
    if not isinstance(value, (tuple, list)) or not all(isinstance(m, Member) for m in value):
        raise MemberError(f"'{input_name}' is not a member chain ({type(value).__name__}); connect the output of a "
                          f"Multi-Model Member node to '{input_name}'.")
    return tuple(value)


def member_range(label, unit, start, end, prefix: str = "") -> RangeSettings:
    try:
        return RangeSettings(unit, float(start), float(end))
    except (TypeError, ValueError) as e:
        msg = str(e).replace("'range_", f"'{prefix}range_") if prefix else str(e)
        raise MemberError(f"{label}: {msg}") from None
