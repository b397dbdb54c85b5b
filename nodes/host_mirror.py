"""Every line that mirrors ComfyUI's own sampling path, in one place.

The base member goes through the host's unchanged `CFGGuider.sample` / `outer_sample` /
`inner_sample`. Helpers ride along as additional models of the base, so the per-model bookkeeping
those methods do for the base is repeated here for each helper. What is mirrored, and from where
(ComfyUI 0.3.75 `comfy/samplers.py`, unchanged in 0.33.0 unless said):

- `enter_helper` / `exit_helper`: `CFGGuider.sample`, the try/finally around `outer_sample`
  (conds copied, `preprocess_conds_hooks`, model_options cloned, hook mode, `prepare_model_patcher`,
  `filter_registered_hooks_on_conds`; restored in finally).
- `helper_extra_models`: `sampler_helpers.prepare_sampling` (a helper's ControlNets, GLIGEN and
  hook models are loaded with it).
- `prepare_helper_run`: `CFGGuider.inner_sample` (`process_conds` with the helper's own BaseModel,
  `sample_sigmas` in transformer_options) and `outer_sample` (`cast_to_load_options`, `pre_run`).
- `check_multigpu`: 0.33's `outer_sample` gives a model with MultiGPU CFG Split clones a thread
  pool and per-device clones (`comfy/multigpu.py`); helpers cannot get them, so such members are
  refused before loading.
- The non-dynamic delegate (0.33's `CFGGuider.inner_set_conds`) needs no mirror: helpers are
  plain `CFGGuider`s and their `set_conds` is the host's own.
- `fix_empty_latent` / `strip_latent_hints`: `nodes.common_ksampler` (0.33 passes the LATENT's
  `downscale_ratio_*` hints to `fix_empty_latent_channels` and pops them from its output; 0.3.75
  has neither). The host's own function is called with what it accepts.
"""
from __future__ import annotations

import inspect

import comfy.hooks
import comfy.model_patcher
import comfy.sample
import comfy.sampler_helpers
import comfy.samplers

LATENT_HINTS = ("downscale_ratio_spacial", "downscale_ratio_temporal")


class MultiGPUError(ValueError):
    pass


def host_latent_hints() -> tuple:
    """The hints this host's `fix_empty_latent_channels` takes (none on 0.3.75)."""
    params = inspect.signature(comfy.sample.fix_empty_latent_channels).parameters
    return tuple(k for k in LATENT_HINTS if k in params)


def fix_empty_latent(model, latent: dict):
    """The host's `fix_empty_latent_channels`, with the LATENT's shape hints where it takes them."""
    hints = {k: latent.get(k) for k in host_latent_hints()}
    return comfy.sample.fix_empty_latent_channels(model, latent["samples"], **hints)


def strip_latent_hints(latent: dict) -> dict:
    """A host that applies the hints drops them from the sampled LATENT (0.33's common_ksampler);
    one that ignores them passes them through (0.3.75)."""
    out = latent.copy()
    for k in host_latent_hints():
        out.pop(k, None)
    return out


def multigpu_clones(patcher) -> list:
    get = getattr(patcher, "get_additional_models_with_key", None)
    return list(get("multigpu")) if get is not None else []


def check_multigpu(labelled_patchers) -> None:
    """labelled_patchers: (member label, ModelPatcher) of every member that will be evaluated."""
    for label, patcher in labelled_patchers:
        if multigpu_clones(patcher):
            raise MultiGPUError(
                f"the {label} carries MultiGPU CFG Split clones: the Multi-Model nodes evaluate every member "
                f"on one device and cannot split a member across GPUs. Remove the MultiGPU CFG Split node "
                f"from this member's MODEL (or set the helpers' weights to 0 to run the base alone).")


def enter_helper(g):
    """CFGGuider.sample's set-up for one helper guider; returns what exit_helper restores."""
    saved = (g, g.model_options, g.model_patcher.hook_mode)
    g.conds = {k: [c.copy() for c in v] for k, v in g.original_conds.items()}
    comfy.samplers.preprocess_conds_hooks(g.conds)
    g.model_options = comfy.model_patcher.create_model_options_clone(g.model_options)
    if comfy.samplers.get_total_hook_groups_in_conds(g.conds) <= 1:
        g.model_patcher.hook_mode = comfy.hooks.EnumHookMode.MinVram
    comfy.sampler_helpers.prepare_model_patcher(g.model_patcher, g.conds, g.model_options)
    comfy.samplers.filter_registered_hooks_on_conds(g.conds, g.model_options)
    return saved


def exit_helper(saved) -> None:
    """CFGGuider.sample's finally for one helper."""
    g, model_options, hook_mode = saved
    comfy.samplers.cast_to_load_options(g.model_options, device=g.model_patcher.offload_device)
    g.model_options, g.model_patcher.hook_mode = model_options, hook_mode
    g.model_patcher.restore_hook_patches()
    g.conds = None


def helper_extra_models(g) -> list:
    """prepare_sampling's additional models of one helper (its ControlNets, GLIGEN, hook models)."""
    return (comfy.sampler_helpers.get_additional_models(g.conds, g.model_patcher.model_dtype())[0]
            + comfy.sampler_helpers.get_additional_models_from_model_options(g.model_options))


def prepare_helper_run(g, noise, latent_in, device, sigmas, denoise_mask, seed, **kwargs) -> None:
    """inner_sample's conds and options for one helper, and outer_sample's cast + pre_run.
    kwargs are what the host passed to inner_sample (0.33: latent_shapes), forwarded to process_conds."""
    g.inner_model = g.model_patcher.model
    g.conds = comfy.samplers.process_conds(g.inner_model, noise, g.conds, device, latent_in, denoise_mask, seed,
                                           **kwargs)
    mo = comfy.model_patcher.create_model_options_clone(g.model_options)
    mo.setdefault("transformer_options", {})["sample_sigmas"] = sigmas
    g.amdm_model_options = mo
    comfy.samplers.cast_to_load_options(g.model_options, device=device, dtype=g.model_patcher.model_dtype())
    g.model_patcher.pre_run()
