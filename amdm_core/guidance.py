"""Model guidance (autoguidance, Karras et al. 2024, "Guiding a diffusion model with a bad version of
itself", arXiv 2406.02507) at ONE shared state: a prediction-space operator (host-free).

Two members share one trajectory: a strong model and a weak one (a smaller, less trained or
weakened version of the same model: same latent space, same noise parameterisation). Every
evaluation below is made at the same state x and noise level sigma; the combination is one
prediction, so any host sampler can step with it.

Predictions are denoised (x0) predictions D, ComfyUI's "denoised". Every combination here is affine
with coefficients summing to 1, and eps = (x - D) / sigma (or a flow velocity) is an affine map of D
with coefficients that depend on (x, sigma) only, so the same formulas hold on eps or velocity
outputs: the node layer may apply them to whichever prediction it has, as long as all inputs are the
same kind and were made at the same (x, sigma).

Forms (GUIDANCE_FORMS):

"autoguidance" (2 evaluations: strong and weak, both on the CONDITIONAL prompt, no CFG):
    D = D_weak + w * (D_strong - D_weak)
  w = 1 is the strong model alone, w = 0 the weak one; the paper uses w > 1 (about 2 to 3).

"autoguidance_cfg" (3 evaluations: strong conditional, strong unconditional, weak conditional):
    D = D_su + cfg * (D_sc - D_su) + (w - 1) * (D_sc - D_wc)
  Derivation: guide toward the density
      p~(x) ~ p_s(x | c) * [p_s(x | c) / p_s(x)]^(cfg - 1) * [p_s(x | c) / p_w(x | c)]^(w - 1),
  the strong conditional density sharpened by two ratios (CFG's and autoguidance's). Its score is
      s~ = s_sc + (cfg - 1) (s_sc - s_su) + (w - 1) (s_sc - s_wc),
  and D = x + sigma^2 * score (Tweedie, k-diffusion x = x0 + sigma * eps) is affine in the score at
  fixed (x, sigma), so
      D = D_sc + (cfg - 1)(D_sc - D_su) + (w - 1)(D_sc - D_wc)
        = D_su + cfg (D_sc - D_su) + (w - 1)(D_sc - D_wc).
  Reductions: w = 1 gives the strong model's own CFG result (D_su + cfg (D_sc - D_su), the host's
  cfg arithmetic); cfg = 1 gives D_sc + (w - 1)(D_sc - D_wc) = D_wc + w (D_sc - D_wc), the
  two-evaluation form (D_su is not needed then).
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from .policies import GUIDANCE_FORMS, check_one_of

# evaluation names, as guidance_needs returns them
STRONG_COND, STRONG_UNCOND, WEAK_COND = "strong_cond", "strong_uncond", "weak_cond"


def _check_scale(name: str, value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"'{name}' = {value!r} is not a number") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"'{name}' = {v} must be a finite number >= 0")
    return v


def _check_tensors(**named: Optional[torch.Tensor]) -> None:
    """Every given prediction is a tensor of the first one's shape (all made at one state)."""
    ref_name, ref = None, None
    for name, t in named.items():
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"'{name}' must be a tensor (a prediction at the shared state), not {type(t).__name__}")
        if ref is None:
            ref_name, ref = name, t
        elif t.shape != ref.shape:
            raise ValueError(f"'{name}' has shape {tuple(t.shape)} but '{ref_name}' has {tuple(ref.shape)}; "
                             f"all predictions must be made at the same state")


def autoguidance(strong: torch.Tensor, weak: torch.Tensor, w: float) -> torch.Tensor:
    """D = weak + w * (strong - weak): both members on the conditional prompt, without CFG.

    strong, weak: the two members' predictions at the same (x, sigma), same kind (x0, eps or
    velocity). w >= 0 is the guidance weight. w == 1 returns `strong` itself (bitwise the strong
    member alone; the weak prediction is not read, so the node layer may skip evaluating it).
    """
    w = _check_scale("w", w)
    if w == 1.0:
        _check_tensors(strong=strong)
        return strong
    _check_tensors(strong=strong, weak=weak)
    return weak + (strong - weak) * w


def autoguidance_cfg(strong_cond: torch.Tensor, strong_uncond: Optional[torch.Tensor],
                     weak_cond: Optional[torch.Tensor], w: float, cfg: float) -> torch.Tensor:
    """D = D_su + cfg (D_sc - D_su) + (w - 1)(D_sc - D_wc): autoguidance combined with the strong
    member's CFG (derivation in the module docstring).

    strong_cond / strong_uncond: the strong member on the positive / negative prompt; weak_cond: the
    weak member on the positive prompt; all at the same (x, sigma). w >= 0, cfg >= 0.
    w == 1: the strong member's own CFG result, computed as the host does
    (uncond + (cond - uncond) * cfg); weak_cond is not read and may be None.
    cfg == 1: exactly autoguidance(strong_cond, weak_cond, w); strong_uncond is not read and may be None.
    """
    w, cfg = _check_scale("w", w), _check_scale("cfg", cfg)
    if cfg == 1.0:
        return autoguidance(strong_cond, weak_cond, w)
    if w == 1.0:
        _check_tensors(strong_cond=strong_cond, strong_uncond=strong_uncond)
        return strong_uncond + (strong_cond - strong_uncond) * cfg
    _check_tensors(strong_cond=strong_cond, strong_uncond=strong_uncond, weak_cond=weak_cond)
    return strong_uncond + (strong_cond - strong_uncond) * cfg + (strong_cond - weak_cond) * (w - 1.0)


def guide(form: str, *, strong_cond: torch.Tensor, w: float, weak_cond: Optional[torch.Tensor] = None,
          strong_uncond: Optional[torch.Tensor] = None, cfg: float = 1.0) -> torch.Tensor:
    """One entry point for the node layer: `form` is one of GUIDANCE_FORMS; pass the predictions
    guidance_needs(form, w, cfg) names (others may be None). cfg is read by "autoguidance_cfg" only."""
    check_one_of("form", form, GUIDANCE_FORMS)
    if form == "autoguidance":
        return autoguidance(strong_cond, weak_cond, w)
    return autoguidance_cfg(strong_cond, strong_uncond, weak_cond, w, cfg)


def guidance_needs(form: str, w: Optional[float] = None, cfg: Optional[float] = None) -> tuple[str, ...]:
    """The evaluations one step of `form` reads, by name ("strong_cond", "strong_uncond",
    "weak_cond"). With w and cfg given, the ones a short-circuit skips are left out (w == 1: no weak
    evaluation; cfg == 1: no unconditional one); None means "any value" (the general count)."""
    check_one_of("form", form, GUIDANCE_FORMS)
    w = None if w is None else _check_scale("w", w)
    cfg = None if cfg is None else _check_scale("cfg", cfg)
    needs = [STRONG_COND]
    if form == "autoguidance_cfg" and cfg != 1.0:
        needs.append(STRONG_UNCOND)
    if w != 1.0:
        needs.append(WEAK_COND)
    return tuple(needs)


def guidance_evaluations(form: str, w: Optional[float] = None, cfg: Optional[float] = None) -> int:
    """Model evaluations per step: "autoguidance" 2, "autoguidance_cfg" 3 (fewer with the
    short-circuits guidance_needs describes: w == 1 drops the weak one, cfg == 1 the unconditional)."""
    return len(guidance_needs(form, w, cfg))
