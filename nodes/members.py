"""Members (model + conditioning + cfg + weight) and the checks that they can be aggregated.

Everything here reads the host objects but never changes them: a Member holds the MODEL and
CONDITIONING objects the user connected, and the guider works on clones.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import comfy.model_sampling

from ..amdm_core import StateUnits, edm_units, eps_units, flow_units, rflow_units

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


@dataclass(frozen=True)
class NodeRef:
    """Which node a label names: its id, and the title the user gave it (the canvas shows titles,
    not ids, by default; API users see ids)."""
    id: str | None = None
    title: str | None = None


def node_ref(hidden, display_name: str) -> NodeRef:
    """The node of a V3 execute call (hidden unique_id and prompt); a title equal to the node's
    display name is no help and is left out."""
    node_id = getattr(hidden, "unique_id", None) if hidden else None
    prompt = getattr(hidden, "prompt", None) if hidden else None
    entry = prompt.get(str(node_id)) if isinstance(prompt, dict) else None
    meta = entry.get("_meta") if isinstance(entry, dict) else None
    title = meta.get("title") if isinstance(meta, dict) else None
    return NodeRef(node_id, title if isinstance(title, str) and title.strip() and title != display_name else None)


def member_label(index: int, node=None) -> str:
    """Member 1 is the base (the Multi-Model Sampler's own model input); helpers count from 2.
    node: a NodeRef or a bare node id."""
    name = "base member" if index == 0 else f"member {index + 1}"
    ref = node if isinstance(node, NodeRef) else NodeRef(node)
    if ref.title:
        name += f' "{ref.title}"'
    return f"{name} (node #{ref.id})" if ref.id not in (None, "") else name


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


def _host_class(name: str):
    return getattr(comfy.model_sampling, name, None)


def state_units(model_sampling) -> StateUnits:
    """The core's state <-> VP-unit conversion for this model's sampling (amdm_core.state_units):
    CONST flow states, COSMOS_RFLOW (k-space states), continuous EDM (its sigma_data), else the
    discrete eps/v schedules. Probed by class, as each host has its own set."""
    for name, units in (("COSMOS_RFLOW", rflow_units), ("CONST", flow_units)):
        cls = _host_class(name)
        if cls is not None and isinstance(model_sampling, cls):
            return units()
    edm = _host_class("ModelSamplingContinuousEDM")
    if edm is not None and isinstance(model_sampling, edm):
        return edm_units(float(getattr(model_sampling, "sigma_data", 1.0)))
    return eps_units()


def sampling_family(model_sampling) -> str:
    """The x-convention: 'flow' (x = (1-s) x0 + s eps), 'rflow' (k-space states of a rectified flow),
    'edm' (x = x0 + s eps around data of std sigma_data) or 'eps' (discrete eps/v/x0 schedules)."""
    units = state_units(model_sampling)
    return units.family if units.family != "edm" else f"edm (sigma_data {units.sigma_data:g})"


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
    b_family = sampling_family(b_ms)
    # flow members may differ in shift: the base's sigmas drive the run and each member maps
    # sigma in (0, 1] to its own timestep; other families must share one schedule
    schedule_bounds = () if b_family == "flow" else ("sigma_min", "sigma_max")
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
        family = sampling_family(ms)
        if family != b_family:
            raise MemberError(f"{m.label} is a {family}-type model ({type(ms).__name__}), the "
                              f"{base.label} a {b_family}-type model: their noisy states mean "
                              f"different things and cannot be aggregated.")
        for name in schedule_bounds:
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
