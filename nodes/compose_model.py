"""Compose Predictions as the k-diffusion `model`: one shared trajectory, the active members'
predictions combined at every evaluation (composable diffusion or a weighted average).

Which members are active is decided by the noise level of each evaluation, like ComfyUI's
conditioning timestep ranges. With one active member the call is exactly that member's own
prediction, so a lone member reproduces the stock KSampler and adjacent ranges make a handoff.
"""
from __future__ import annotations

import comfy.model_patcher

from ..amdm_core import compose_predictions
from .host_stepper import CFG_PP_ADVICE, post_cfg_count


class ComposeModel:
    def __init__(self, members, ranges, window, weights, mode, sigmas, sampler_name="the sampler"):
        self.sampler_name = sampler_name
        self.members, self.ranges, self.window = members, ranges, window
        self.weights, self.mode = list(weights), mode
        self.step_sigmas = [float(v) for v in sigmas[:-1]]
        self.composed_steps = set()

    def __getattr__(self, name):               # samplers read .inner_model etc. of the base
        if name == "members":
            raise AttributeError(name)
        return getattr(self.members[0], name)

    def active(self, sigma: float) -> list[int]:
        return [k for k, r in enumerate(self.ranges) if r.contains(sigma) and (k == 0 or self.window.contains(sigma))]

    def __call__(self, x, sigma, **kw):
        s = float(sigma.flatten()[0])
        act = self.active(s)
        if not act:
            raise ValueError(f"no member is active at sigma {s:.4g}: the members' noise ranges must together cover "
                             f"the whole schedule")
        if len(act) == 1:
            return self._call(act[0], x, sigma, kw)
        if post_cfg_count(kw.get("model_options")) > post_cfg_count(self.members[0].extra_args.get("model_options")):
            raise ValueError(f"sampler '{self.sampler_name}' installed a post-CFG hook: {CFG_PP_ADVICE}.")
        self.composed_steps.add(max(j for j, v in enumerate(self.step_sigmas) if v >= s - 1e-6 * max(1.0, s)))
        captured = [{} for _ in act] if self.mode == "composable" else None
        outs = [self._call(k, x, sigma, kw, captured[i] if captured else None) for i, k in enumerate(act)]
        w = [self.weights[k] for k in act]
        if self.mode == "average":
            return compose_predictions(outs, None, w, "average")
        out = compose_predictions(outs, [c["uncond"] for c in captured], w, "composable")
        mask = kw.get("denoise_mask")
        if mask is not None:        # the members' outputs are masked; the combination must be too
            out = out * mask + self.members[0].latent_image * (1.0 - mask)
        return out

    def _call(self, k, x, sigma, kw, capture=None):
        m = self.members[k]
        args = dict(kw) if k == 0 else dict(m.extra_args, denoise_mask=kw.get("denoise_mask"))
        if capture is not None:     # record the unconditional prediction (the CFG++ samplers' route)
            def keep_uncond(a, store=capture):
                store["uncond"] = a["uncond_denoised"]
                return a["denoised"]
            args["model_options"] = comfy.model_patcher.set_model_options_post_cfg_function(
                dict(args.get("model_options", {})), keep_uncond, disable_cfg1_optimization=True)
        return m(x, sigma, **args)
