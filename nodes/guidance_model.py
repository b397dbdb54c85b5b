"""Model Guidance (autoguidance) as the k-diffusion `model`: one shared trajectory; at every
evaluation inside the guidance window the strong member (the base) and the weak member (the one
helper) are evaluated at the same state and their predictions combined by amdm_core.guide; outside
the window the base alone, with its own CFG, exactly as the stock KSampler.

The raw predictions are read through a post-CFG hook (as the CFG++ samplers read theirs): it
returns the host's CFG result unchanged, so the base's own path is untouched. The combination is made
on the unmasked predictions and masked afterwards, as KSamplerX0Inpaint masks a single model.
"""
from __future__ import annotations

import math

import comfy.model_patcher

from ..amdm_core import guidance_needs, guide
from .host_stepper import CFG_PP_ADVICE, post_cfg_count

KINDS = ("strong_cond", "strong_uncond", "weak_cond")


class GuidanceModel:
    def __init__(self, strong, weak, guider, settings, weak_range, window, sigmas, sampler_name="the sampler"):
        """strong, weak: MemberModels of the base and the weak helper (the helper's guider at cfg 1);
        guider: the base's CFGGuider (its cfg is the strong member's CFG scale)."""
        self.strong, self.weak, self.guider = strong, weak, guider
        self.form, self.w = settings.form, float(settings.w)
        self.weak_range, self.window, self.sampler_name = weak_range, window, sampler_name
        self.step_sigmas = [float(v) for v in sigmas[:-1]]
        self.guided_steps = set()
        self.counts = dict.fromkeys(KINDS, 0)      # evaluations inside the window, by kind
        self.base_alone = 0                        # base evaluations outside the window (its own CFG)

    def __getattr__(self, name):               # samplers read .inner_model etc. of the base
        if name == "strong":
            raise AttributeError(name)
        return getattr(self.strong, name)

    @property
    def members(self):
        return [self.strong, self.weak]

    def guided(self, sigma: float) -> bool:
        return self.window.contains(sigma) and self.weak_range.contains(sigma)

    def __call__(self, x, sigma, **kw):
        s = float(sigma.flatten()[0])
        if not self.guided(s):
            self.base_alone += 1
            return self.strong(x, sigma, **kw)
        if post_cfg_count(kw.get("model_options")) > post_cfg_count(self.strong.extra_args.get("model_options")):
            raise ValueError(f"sampler '{self.sampler_name}' installed a post-CFG hook: {CFG_PP_ADVICE}.")
        self.guided_steps.add(max(j for j, v in enumerate(self.step_sigmas) if v >= s - 1e-6 * max(1.0, s)))
        # the strong member's CFG scale in this form: none in plain autoguidance, its own in the CFG form
        cfg = float(self.guider.cfg) if self.form == "autoguidance_cfg" else 1.0
        needs = guidance_needs(self.form, self.w, cfg)
        if "weak_cond" not in needs:          # w = 1: the strong member alone, its own call, bit for bit
            return self._strong_alone(x, sigma, kw, cfg)
        strong = self._strong_call(x, sigma, kw, cfg)
        weak = self._capture(self.weak, x, sigma, dict(self.weak.extra_args, denoise_mask=kw.get("denoise_mask")))
        self.counts["weak_cond"] += 1
        out = guide(self.form, strong_cond=strong["cond"], w=self.w, weak_cond=weak["cond"],
                    strong_uncond=strong.get("uncond"), cfg=cfg)
        mask = kw.get("denoise_mask")
        if mask is not None:        # the members' raw predictions are unmasked; the combination must be masked
            out = out * mask + self.strong.latent_image * (1.0 - mask)
        return out

    def _count_strong(self, cfg):
        self.counts["strong_cond"] += 1
        if not math.isclose(cfg, 1.0):        # the host skips the unconditional pass at cfg 1
            self.counts["strong_uncond"] += 1

    def _strong_alone(self, x, sigma, kw, cfg):
        self._count_strong(cfg)
        with _cfg(self.guider, cfg):
            return self.strong(x, sigma, **kw)

    def _strong_call(self, x, sigma, kw, cfg):
        self._count_strong(cfg)
        with _cfg(self.guider, cfg):
            got = self._capture(self.strong, x, sigma, dict(kw))
        if math.isclose(cfg, 1.0):
            got.pop("uncond", None)
        return got

    @staticmethod
    def _capture(member, x, sigma, args):
        """Call a member, recording its raw conditional / unconditional predictions (post-CFG hook that
        returns the host's result unchanged; the cfg-1 optimisation stays on)."""
        store = {}

        def keep(a):
            store["cond"], store["uncond"] = a["cond_denoised"], a["uncond_denoised"]
            return a["denoised"]
        args["model_options"] = comfy.model_patcher.set_model_options_post_cfg_function(
            dict(args.get("model_options", {})), keep)
        member(x, sigma, **args)
        return store


class _cfg:
    """The base guider's CFG scale for one call (restored after it); a no-op when unchanged."""

    def __init__(self, guider, cfg):
        self.guider, self.cfg, self.saved = guider, cfg, None

    def __enter__(self):
        self.saved = self.guider.cfg
        if self.cfg != self.saved:
            self.guider.cfg = self.cfg

    def __exit__(self, *exc):
        self.guider.cfg = self.saved
        return False
