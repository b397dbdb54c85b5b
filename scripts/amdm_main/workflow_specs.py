"""The shipped workflows, described once; build_workflows.py turns them into the UI-format files
(workflows/ui/, copied to example_workflows/ under their template titles) and their API-format
twins (workflows/api/).

Model file names are placeholders (PLACEHOLDERS); the README says what to put there. Only stock
ComfyUI nodes and this pack's nodes are used.
"""
from __future__ import annotations

CONTENT_CKPT = "content_model_sd15.safetensors"
STYLE_CKPT = "style_model_sd15.safetensors"
GLIGEN_MODEL = "gligen_sd14_textbox_pruned.safetensors"
WEAK_CKPT = "sd15_base_model.safetensors"
INPUT_IMAGE = "example.png"
# flow families (README "Model families"): Flux.1-dev finetunes and Wan 2.2 A14B's two experts, with the
# file names of ComfyUI's own example workflows where one exists
FLUX_A = "flux1_dev_finetune_a.safetensors"
FLUX_B = "flux1_dev_finetune_b.safetensors"
FLUX_CLIP_L = "clip_l.safetensors"
FLUX_T5 = "t5xxl_fp8_e4m3fn.safetensors"
FLUX_VAE = "ae.safetensors"
WAN_HIGH = "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors"
WAN_LOW = "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"
WAN_T5 = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
WAN_VAE = "wan_2.1_vae.safetensors"
PLACEHOLDERS = {
    CONTENT_CKPT: "an SD1.5 checkpoint for content (the base model whose result you get), in models/checkpoints",
    STYLE_CKPT: "a second SD1.5 checkpoint, e.g. a style finetune (the helper), in models/checkpoints",
    WEAK_CKPT: "the model your finetune was trained from, e.g. SD1.5 itself (the weak model), in models/checkpoints",
    GLIGEN_MODEL: "the SD1.x GLIGEN text-box model (gligen_sd14_textbox_pruned.safetensors), in models/gligen",
    INPUT_IMAGE: "the input image for img2img (ComfyUI ships input/example.png)",
    FLUX_A: "a Flux.1-dev diffusion model (the base: its result is what you get), in models/diffusion_models",
    FLUX_B: "a second Flux.1-dev finetune (the helper), in models/diffusion_models",
    FLUX_CLIP_L: "Flux's CLIP-L text encoder, in models/text_encoders",
    FLUX_T5: "Flux's T5-XXL text encoder, in models/text_encoders",
    FLUX_VAE: "the Flux VAE (ae.safetensors), in models/vae",
    WAN_HIGH: "Wan 2.2 T2V A14B high-noise expert, in models/diffusion_models",
    WAN_LOW: "Wan 2.2 T2V A14B low-noise expert, in models/diffusion_models",
    WAN_T5: "Wan's umT5-XXL text encoder, in models/text_encoders",
    WAN_VAE: "the Wan 2.1 VAE (Wan 2.2 A14B uses it), in models/vae",
}

PROMPT = "a red fox sitting in a sunny meadow, detailed, high quality"
STYLE_PROMPT = "a red fox sitting in a sunny meadow, watercolor painting, soft brush strokes"
NEGATIVE = "blurry, low quality, watermark, text"
SEED = 122955          # the reference code's seed for its two-model example

# The paper / reference code settings (see README "Faithfulness"): base weight omega = 0.5, the
# helper sqrt(1 - omega^2) = 0.866, aggregation after steps 1..3 of 20 (euler + ddim_uniform is
# the reference code's DDIM eta = 0 arithmetic), deviation step p = 45 at 512^2 = 0.3516 per
# sqrt(n), faithful target on the base, cfg 7.5 per member.
PAPER = dict(steps=20, cfg=7.5, sampler_name="euler", scheduler="ddim_uniform", base_weight=0.5,
             helper_weight=0.866, window=(1, 3), deviation_step=0.3516)

BASE_COLOR = {"color": "#5a4a1a", "bgcolor": "#7a6420"}  # the base (specified) model's loader


def _common(content_title="Content model (base)", style_title="Style model (helper)"):
    """Loaders (column 0) and prompts (column 1) shared by the workflows: ids 1-6."""
    return [
        {"id": 1, "type": "CheckpointLoaderSimple", "title": content_title, "col": 0,
         "widgets": {"ckpt_name": CONTENT_CKPT}, **BASE_COLOR},
        {"id": 2, "type": "CheckpointLoaderSimple", "title": style_title, "col": 0,
         "widgets": {"ckpt_name": STYLE_CKPT}},
        {"id": 3, "type": "CLIPTextEncode", "title": "Base positive", "col": 1,
         "widgets": {"text": PROMPT}, "links": {"clip": [1, 1]}},
        {"id": 4, "type": "CLIPTextEncode", "title": "Base negative", "col": 1,
         "widgets": {"text": NEGATIVE}, "links": {"clip": [1, 1]}},
        {"id": 5, "type": "CLIPTextEncode", "title": "Helper positive", "col": 1,
         "widgets": {"text": STYLE_PROMPT}, "links": {"clip": [2, 1]}},
        {"id": 6, "type": "CLIPTextEncode", "title": "Helper negative", "col": 1,
         "widgets": {"text": NEGATIVE}, "links": {"clip": [2, 1]}},
    ]


def _empty_latent(nid, col=1):
    return {"id": nid, "type": "EmptyLatentImage", "col": col, "widgets": {"width": 512, "height": 512, "batch_size": 1}}


def _member(nid, title, links, col=2, **widgets):
    w = {"cfg": PAPER["cfg"], "weight": PAPER["helper_weight"]}
    w.update(widgets)
    return {"id": nid, "type": "AMDM_Member", "title": title, "col": col, "widgets": w, "links": links}


def _aggregate(nid, unit="steps", start=PAPER["window"][0], end=PAPER["window"][1], col=2):
    return {"id": nid, "type": "AMDM_SphericalAggregate", "col": col,
            "widgets": {"mode": "spherical", "window_unit": unit, "window_start": start, "window_end": end,
                        "initial_noise": "independent", "step_noise": "independent", "normalize_weights": True}}


def _deviation(nid, col=2):
    return {"id": nid, "type": "AMDM_DeviationOptimize", "col": col,
            "widgets": {"step": PAPER["deviation_step"], "mode": "absolute", "target": "faithful",
                        "members": "base", "helper_step": PAPER["deviation_step"]}}


def _sampler(nid, links, col=3, **over):
    w = {"seed": SEED, "steps": PAPER["steps"], "cfg": PAPER["cfg"], "sampler_name": PAPER["sampler_name"],
         "scheduler": PAPER["scheduler"], "denoise": 1.0, "base_weight": PAPER["base_weight"]}
    w.update(over)
    return {"id": nid, "type": "AMDM_MultiModelSampler", "col": col, "widgets": w, "links": links}


def _decode_save(nid, samples, vae, prefix, col=4):
    return [
        {"id": nid, "type": "VAEDecode", "col": col, "links": {"samples": samples, "vae": vae}},
        {"id": nid + 1, "type": "SaveImage", "col": col, "widgets": {"filename_prefix": prefix},
         "links": {"images": [nid, 0]}},
    ]


def _note(text, col=0, h=420):
    return [{"id": 100, "col": col, "h": h, "title": "Read me", "text": text}]


NOTE_MODELS = (
    "**Model files are placeholders.** Put your own files there:\n\n"
    f"- `{CONTENT_CKPT}`: {PLACEHOLDERS[CONTENT_CKPT]}\n"
    f"- `{STYLE_CKPT}`: {PLACEHOLDERS[STYLE_CKPT]}\n\n"
    "All members must share one latent space (all SD1.5 here). The **base model** input of the "
    "sampler (marked with a star) is the specified model: its result is what you get; helpers steer "
    "the early steps.\n"
)
BASE_LINKS = {"model": [1, 0], "positive": [3, 0], "negative": [4, 0]}
HELPER_LINKS = {"model": [2, 0], "positive": [5, 0], "negative": [6, 0]}


def two_models():
    nodes = _common() + [
        _empty_latent(7),
        _member(8, "Style member (helper)", HELPER_LINKS),
        _aggregate(9),
        _deviation(10),
        _sampler(11, {**BASE_LINKS, "members": [8, 0], "latent_image": [7, 0], "aggregation": [9, 0],
                      "deviation": [10, 0]}),
        *_decode_save(12, [11, 0], [1, 2], "amdm/two_models"),
    ]
    note = NOTE_MODELS + (
        "\nPaper settings: base weight 0.5, helper 0.866 (scaled to sum of squares 1), aggregation after "
        "steps 1-3 of 20, deviation step 0.35 (the reference code's p = 45 at 512x512), euler + ddim_uniform "
        "(the reference code's DDIM), cfg 7.5 per member.")
    return nodes, _note(note)


def three_members_gligen():
    # six columns (the layout branch has one of its own), so that the graph fits one screen
    nodes = _common() + [
        {"id": 7, "type": "GLIGENLoader", "title": "GLIGEN (layout)", "col": 0, "widgets": {"gligen_name": GLIGEN_MODEL}},
        _empty_latent(11, col=1),
        {"id": 8, "type": "CLIPTextEncode", "title": "Layout positive", "col": 2, "w": 400,
         "widgets": {"text": "a red fox and a small blue bird in a sunny meadow"}, "links": {"clip": [1, 1]}},
        {"id": 9, "type": "GLIGENTextBoxApply", "title": "Box: fox", "col": 2, "w": 400,
         "widgets": {"text": "a red fox", "width": 256, "height": 256, "x": 32, "y": 224},
         "links": {"conditioning_to": [8, 0], "clip": [1, 1], "gligen_textbox_model": [7, 0]}},
        {"id": 10, "type": "GLIGENTextBoxApply", "title": "Box: bird", "col": 2, "w": 400,
         "widgets": {"text": "a small blue bird", "width": 160, "height": 160, "x": 320, "y": 64},
         "links": {"conditioning_to": [9, 0], "clip": [1, 1], "gligen_textbox_model": [7, 0]}},
        _member(12, "Style member (helper)", HELPER_LINKS, col=3, weight=0.441),
        _member(13, "Layout member (GLIGEN boxes)", {"model": [1, 0], "positive": [10, 0], "negative": [4, 0],
                                                     "previous": [12, 0]}, col=3, weight=0.764),
        _aggregate(14, col=3),
        {**_deviation(15, col=4), "w": 360},
        {**_sampler(16, {**BASE_LINKS, "members": [13, 0], "latent_image": [11, 0], "aggregation": [14, 0],
                         "deviation": [15, 0]}, col=4, base_weight=0.235), "w": 360},
        *_decode_save(17, [16, 0], [1, 2], "amdm/three_members_gligen", col=5),
    ]
    note = NOTE_MODELS + (
        f"- `{GLIGEN_MODEL}`: {PLACEHOLDERS[GLIGEN_MODEL]}\n\n"
        "Three members: the content model (base), the style model, and the content model again with "
        "stock GLIGEN text boxes (layout control). Weights 0.235 / 0.441 / 0.764 are the reference "
        "code's three-model weights (omega1 0.47, omega2 0.5), scaled to sum of squares 1.")
    return nodes, _note(note, col=5, h=520)


def guider_custom_sigmas():
    nodes = _common() + [
        _empty_latent(7),
        _member(8, "Style member (helper)", HELPER_LINKS),
        # the window by noise level: every step that starts at sigma 14.7 .. 4.0 of the custom schedule
        _aggregate(9, unit="sigma", start=14.7, end=4.0),
        _deviation(10),
        {"id": 11, "type": "AMDM_MultiModelGuider", "col": 3,
         "widgets": {"cfg": PAPER["cfg"], "base_weight": PAPER["base_weight"]},
         "links": {**BASE_LINKS, "members": [8, 0], "aggregation": [9, 0], "deviation": [10, 0]}},
        {"id": 12, "type": "RandomNoise", "col": 3, "widgets": {"noise_seed": SEED}},
        {"id": 13, "type": "KSamplerSelect", "col": 3, "widgets": {"sampler_name": "euler"}},
        {"id": 14, "type": "KarrasScheduler", "title": "Custom sigmas (Karras)", "col": 3,
         "widgets": {"steps": 20, "sigma_max": 14.614642, "sigma_min": 0.0291675, "rho": 7.0}},
        {"id": 15, "type": "SamplerCustomAdvanced", "col": 4,
         "links": {"noise": [12, 0], "guider": [11, 0], "sampler": [13, 0], "sigmas": [14, 0], "latent_image": [7, 0]}},
        *_decode_save(16, [15, 0], [1, 2], "amdm/guider_custom_sigmas"),   # under the sampler: five columns
    ]
    note = NOTE_MODELS + (
        "\nThe Multi-Model Guider drives the stock **SamplerCustomAdvanced**, so any NOISE, SAMPLER and "
        "SIGMAS work. Here a Karras schedule with explicit sigma_max/sigma_min/rho; the aggregation window "
        "is given in sigma (14.7 down to 4.0).")
    return nodes, _note(note)


def img2img():
    nodes = _common() + [
        {"id": 7, "type": "LoadImage", "title": "Input image", "col": 0, "widgets": {"image": INPUT_IMAGE}},
        {"id": 8, "type": "ImageScale", "col": 1,
         "widgets": {"upscale_method": "bicubic", "width": 512, "height": 512, "crop": "center"},
         "links": {"image": [7, 0]}},
        {"id": 9, "type": "VAEEncode", "col": 1, "links": {"pixels": [8, 0], "vae": [1, 2]}},
        _member(10, "Style member (helper)", HELPER_LINKS),
        # a step window counts this run's own steps, so it still aggregates with denoise < 1
        _aggregate(11),
        _deviation(12),
        _sampler(13, {**BASE_LINKS, "members": [10, 0], "latent_image": [9, 0], "aggregation": [11, 0],
                      "deviation": [12, 0]}, denoise=0.6),
        *_decode_save(14, [13, 0], [1, 2], "amdm/img2img"),
    ]
    note = NOTE_MODELS + (
        f"- `{INPUT_IMAGE}`: {PLACEHOLDERS[INPUT_IMAGE]}\n\n"
        "img2img: the image is encoded and re-noised to denoise 0.6; the aggregation window is given in "
        "steps of this run (1-3), which exist whatever the denoise.")
    return nodes, _note(note, col=4, h=480)


def handoff_compose():
    nodes = _common(content_title="Content model (base, finishes)", style_title="Style model (starts)") + [
        _empty_latent(7),
        # the helper is active on the first 30 % of the noise range, the base on the rest: a handoff
        _member(8, "Style member: noise 0-0.3", HELPER_LINKS, weight=1.0, range_start=0.0, range_end=0.3,
                range_unit="percent"),
        {"id": 9, "type": "AMDM_ComposePredictions", "col": 2,
         "widgets": {"mode": "average", "window_unit": "percent", "window_start": 0.0, "window_end": 1.0}},
        _sampler(10, {**BASE_LINKS, "members": [8, 0], "latent_image": [7, 0], "aggregation": [9, 0]},
                 base_weight=1.0, base_range_start=0.3, base_range_end=1.0, base_range_unit="percent"),
        *_decode_save(11, [10, 0], [1, 2], "amdm/handoff"),
    ]
    note = NOTE_MODELS + (
        "\n**Handoff by noise level** (not AMDM): Compose Predictions with member noise ranges. The style "
        "model denoises the first 30 % of the noise range (composition), the content model the rest "
        "(details), in one sampling pass on one shared trajectory. Adjacent ranges mean exactly one member "
        "is evaluated at each step.")
    return nodes, _note(note, h=480)


def windowed_compose():
    nodes = _common() + [
        _empty_latent(7),
        _member(8, "Style member (helper)", HELPER_LINKS, weight=1.0),
        {"id": 9, "type": "AMDM_ComposePredictions", "title": "Compose: first 40 %", "col": 2,
         "widgets": {"mode": "composable", "window_unit": "percent", "window_start": 0.0, "window_end": 0.4}},
        _sampler(10, {**BASE_LINKS, "members": [8, 0], "latent_image": [7, 0], "aggregation": [9, 0]},
                 base_weight=1.0),
        *_decode_save(11, [10, 0], [1, 2], "amdm/windowed_compose"),
    ]
    note = NOTE_MODELS + (
        "\n**Windowed composition** (not AMDM): Compose Predictions in composable mode for the first 40 % of "
        "the noise range (mean unconditional prediction plus each member's weighted guidance, weight 1 = "
        "plain composable diffusion), then the base model alone.")
    return nodes, _note(note, h=480)


def sweep():
    nodes = _common() + [
        _empty_latent(7),
        _member(8, "Style member (helper)", HELPER_LINKS),
        _aggregate(9),
        _deviation(10),
        {"id": 11, "type": "AMDM_MultiModelSweep", "col": 3,
         "widgets": {"seed": SEED, "steps": PAPER["steps"], "cfg": PAPER["cfg"], "sampler_name": PAPER["sampler_name"],
                     "scheduler": PAPER["scheduler"], "denoise": 1.0, "base_weight": PAPER["base_weight"],
                     "parameter": "window_end", "values": "1, 3, 6", "parameter_2": "base_weight",
                     "values_2": "0.5, 0.7"},
         "links": {**BASE_LINKS, "members": [8, 0], "latent_image": [7, 0], "vae": [1, 2], "aggregation": [9, 0],
                   "deviation": [10, 0]}},
        {"id": 12, "type": "SaveImage", "col": 4, "w": 420, "widgets": {"filename_prefix": "amdm/sweep_grid"},
         "links": {"images": [11, 0]}},
    ]
    note = NOTE_MODELS + (
        "\n**Multi-Model Sweep**: one seed, a grid of settings (here the window end, steps 1, 3, 6, in rows of "
        "base weight 0.5 and 0.7) and a labelled image grid to pick from. The cost is logged before it starts.")
    return nodes, _note(note, h=480)


def model_guidance():
    """Weak-to-strong autoguidance: the finetune (strong, the base member) guided away from the model it
    was trained from (weak, the one helper), in the paper's three-evaluation form with the base's CFG."""
    nodes = _common(content_title="Finetune (strong, base)", style_title="Base SD1.5 (weak)") + [
        _empty_latent(7),
        _member(8, "Weak member", HELPER_LINKS, cfg=1.0, weight=1.0),
        {"id": 9, "type": "AMDM_ModelGuidance", "col": 2,
         "widgets": {"form": "autoguidance_cfg", "w": 2.0, "window_unit": "percent", "window_start": 0.0,
                     "window_end": 1.0}},
        _sampler(10, {**BASE_LINKS, "members": [8, 0], "latent_image": [7, 0], "aggregation": [9, 0]},
                 cfg=5.0, base_weight=1.0, scheduler="normal"),
        *_decode_save(11, [10, 0], [1, 2], "amdm/model_guidance"),
    ]
    nodes[1]["widgets"] = {"ckpt_name": WEAK_CKPT}
    nodes[4].update(title="Weak positive", widgets={"text": PROMPT})     # the weak model reads the same prompt
    nodes[5]["title"] = "Weak negative"
    note = (
        "**Model files are placeholders.** Put your own files there:\n\n"
        f"- `{CONTENT_CKPT}`: an SD1.5 finetune (the strong model, whose result you get)\n"
        f"- `{WEAK_CKPT}`: {PLACEHOLDERS[WEAK_CKPT]}\n\n"
        "**Model guidance (autoguidance, Karras et al. 2024)**, not AMDM: one trajectory; at each step the "
        "finetune's CFG result plus (w - 1) x (finetune - weak model), both on the same prompt. Three "
        "evaluations per step. Guidance weight 1 is the finetune alone; the weak model should be a weaker "
        "version of the strong one (the model it was finetuned from, an earlier or smaller one).")
    return nodes, _note(note, h=520)


def superposition():
    """SuperDiff OR of two models: each sample follows the member whose density is highest, tracked
    along the reverse SDE; its own stepper, so many steps."""
    nodes = _common() + [
        _empty_latent(7),
        _member(8, "Style member (helper)", HELPER_LINKS, weight=1.0),
        {"id": 9, "type": "AMDM_Superposition", "col": 2, "widgets": {"mode": "or", "temperature": 1.0}},
        _sampler(10, {**BASE_LINKS, "members": [8, 0], "latent_image": [7, 0], "aggregation": [9, 0]},
                 steps=50, base_weight=1.0, scheduler="karras"),
        *_decode_save(11, [10, 0], [1, 2], "amdm/superposition"),
    ]
    note = NOTE_MODELS + (
        "\n**Superposition (SuperDiff, Skreta et al. 2024)**, not AMDM: both models on one trajectory; at every "
        "step their noise predictions (each with its own CFG) are mixed per image with weights from each "
        "model's log-density, tracked along the reverse SDE. OR: each image follows one model (a mixture); "
        "AND: images both models find equally likely. It runs its own SDE stepper (the sampler choice is "
        "not used); the scheduler and steps give the noise levels, and it needs many steps (50 here).")
    return nodes, _note(note, h=520)


FLUX_PROMPT = "a red fox sitting in a sunny meadow, golden hour, detailed fur"
FLUX_HELPER_PROMPT = "a red fox sitting in a sunny meadow, watercolor painting, soft brush strokes"


def flux_two_models():
    """AMDM with two Flux.1-dev finetunes: guidance distilled, so cfg 1 everywhere (one evaluation per
    member step) and each member's guidance comes from its own FluxGuidance node."""
    enc = {"clip": [3, 0]}
    nodes = [
        {"id": 1, "type": "UNETLoader", "title": "Flux finetune A (base)", "col": 0,
         "widgets": {"unet_name": FLUX_A, "weight_dtype": "default"}, **BASE_COLOR},
        {"id": 2, "type": "UNETLoader", "title": "Flux finetune B (helper)", "col": 0,
         "widgets": {"unet_name": FLUX_B, "weight_dtype": "default"}},
        # titled: the display names of these stock nodes differ between hosts (API twins store them)
        {"id": 3, "type": "DualCLIPLoader", "title": "Flux text encoders", "col": 0,
         "widgets": {"clip_name1": FLUX_CLIP_L, "clip_name2": FLUX_T5, "type": "flux"}},
        {"id": 4, "type": "VAELoader", "title": "Flux VAE", "col": 0, "widgets": {"vae_name": FLUX_VAE}},
        {"id": 5, "type": "CLIPTextEncode", "title": "Base positive", "col": 1, "widgets": {"text": FLUX_PROMPT},
         "links": enc},
        {"id": 6, "type": "CLIPTextEncode", "title": "Negative (unused at cfg 1)", "col": 1, "widgets": {"text": ""},
         "links": enc},
        {"id": 7, "type": "CLIPTextEncode", "title": "Helper positive", "col": 1,
         "widgets": {"text": FLUX_HELPER_PROMPT}, "links": enc},
        {"id": 8, "type": "FluxGuidance", "title": "Base guidance", "col": 1, "widgets": {"guidance": 3.5},
         "links": {"conditioning": [5, 0]}},
        {"id": 9, "type": "FluxGuidance", "title": "Helper guidance", "col": 1, "widgets": {"guidance": 3.5},
         "links": {"conditioning": [7, 0]}},
        {"id": 10, "type": "EmptySD3LatentImage", "title": "Empty latent", "col": 2, "widgets": {"width": 1024, "height": 1024, "batch_size": 1}},
        _member(11, "Finetune B member (helper)", {"model": [2, 0], "positive": [9, 0], "negative": [6, 0]},
                cfg=1.0),
        _aggregate(12),
        _deviation(13),
        _sampler(14, {"model": [1, 0], "positive": [8, 0], "negative": [6, 0], "members": [11, 0],
                      "latent_image": [10, 0], "aggregation": [12, 0], "deviation": [13, 0]},
                 cfg=1.0, scheduler="simple"),
        *_decode_save(15, [14, 0], [4, 0], "amdm/flux_two_models"),
    ]
    note = (
        "**Model files are placeholders.** Put your own files there:\n\n"
        + "".join(f"- `{f}`: {PLACEHOLDERS[f]}\n" for f in (FLUX_A, FLUX_B, FLUX_CLIP_L, FLUX_T5, FLUX_VAE))
        + "\nFlux.1-dev is guidance distilled: **cfg 1** on the sampler and the member (one model evaluation "
        "per member step; the negative is not used), and the guidance strength comes from each member's own "
        "FluxGuidance. Both finetunes must be Flux.1 models (one latent space); they may differ in shift. "
        "AMDM aggregates in VP units of the flow state (README, Model families): paper weights 0.5 / 0.866, "
        "steps 1-3 of 20, euler + simple.")
    return nodes, _note(note, h=520)


WAN22_T2V_BOUNDARY = 0.875     # Wan 2.2's switch from the high-noise to the low-noise expert (text to video)


def wan22_experts_handoff():
    """Wan 2.2 A14B's two experts in one pass: the high-noise expert above sigma 0.875, the low-noise
    expert below (the official boundary), as Compose Predictions with member noise ranges."""
    enc = {"clip": [5, 0]}
    nodes = [
        {"id": 1, "type": "UNETLoader", "title": "High-noise expert", "col": 0,
         "widgets": {"unet_name": WAN_HIGH, "weight_dtype": "default"}},
        {"id": 2, "type": "UNETLoader", "title": "Low-noise expert (base, finishes)", "col": 0,
         "widgets": {"unet_name": WAN_LOW, "weight_dtype": "default"}, **BASE_COLOR},
        {"id": 3, "type": "ModelSamplingSD3", "title": "Shift (high)", "col": 1, "widgets": {"shift": 8.0},
         "links": {"model": [1, 0]}},
        {"id": 4, "type": "ModelSamplingSD3", "title": "Shift (low)", "col": 1, "widgets": {"shift": 8.0},
         "links": {"model": [2, 0]}},
        {"id": 5, "type": "CLIPLoader", "title": "Wan text encoder", "col": 0, "widgets": {"clip_name": WAN_T5, "type": "wan"}},
        {"id": 6, "type": "VAELoader", "title": "Wan VAE", "col": 0, "widgets": {"vae_name": WAN_VAE}},
        {"id": 7, "type": "CLIPTextEncode", "title": "Positive", "col": 1,
         "widgets": {"text": "a red fox walks through a sunny meadow, the camera follows it, cinematic"},
         "links": enc},
        {"id": 8, "type": "CLIPTextEncode", "title": "Negative", "col": 1,
         "widgets": {"text": "blurry, static, low quality, watermark, text"}, "links": enc},
        {"id": 9, "type": "EmptyHunyuanLatentVideo", "title": "Empty video latent", "col": 2,
         "widgets": {"width": 640, "height": 640, "length": 81, "batch_size": 1}},
        _member(10, "High-noise expert: sigma 1-0.875", {"model": [3, 0], "positive": [7, 0], "negative": [8, 0]},
                cfg=3.5, weight=1.0, range_unit="sigma", range_start=1.0, range_end=WAN22_T2V_BOUNDARY),
        {"id": 11, "type": "AMDM_ComposePredictions", "title": "Handoff (one member at a time)", "col": 2,
         "widgets": {"mode": "average", "window_unit": "percent", "window_start": 0.0, "window_end": 1.0}},
        _sampler(12, {"model": [4, 0], "positive": [7, 0], "negative": [8, 0], "members": [10, 0],
                      "latent_image": [9, 0], "aggregation": [11, 0]},
                 cfg=3.5, scheduler="simple", base_weight=1.0, base_range_unit="sigma",
                 base_range_start=WAN22_T2V_BOUNDARY, base_range_end=0.0),
        {"id": 13, "type": "VAEDecode", "col": 4, "links": {"samples": [12, 0], "vae": [6, 0]}},
        # an animated WEBP: the one video saver whose inputs are the same on every tested host
        {"id": 14, "type": "SaveAnimatedWEBP", "title": "Save video (animated WEBP)", "col": 4,
         "widgets": {"filename_prefix": "amdm/wan22_handoff", "fps": 16.0, "lossless": False, "quality": 90,
                     "method": "default"},
         "links": {"images": [13, 0]}},
    ]
    note = (
        "**Model files are placeholders.** Put your own files there:\n\n"
        + "".join(f"- `{f}`: {PLACEHOLDERS[f]}\n" for f in (WAN_HIGH, WAN_LOW, WAN_T5, WAN_VAE))
        + f"\n**Wan 2.2 expert handoff in one pass** (not AMDM): the high-noise expert denoises while sigma > "
        f"{WAN22_T2V_BOUNDARY} (Wan 2.2's boundary for text to video; use 0.9 for image to video), the "
        "low-noise expert the rest. For euler this equals the usual two chained KSamplerAdvanced split at "
        "that step; multistep samplers (dpmpp_2m, res_multistep, uni_pc) keep their history across the "
        "switch, which the chain cannot. The boundary is a noise level, so it holds for any step count.")
    return nodes, _note(note, h=560)


# name -> (builder, one-line description)
WORKFLOWS = {
    "amdm_sd15_two_models": (two_models, "two SD1.5 checkpoints (content + style), paper settings"),
    "amdm_sd15_three_members_gligen": (three_members_gligen, "three members, one with GLIGEN box layout"),
    "amdm_sd15_guider_custom_sigmas": (guider_custom_sigmas, "Multi-Model Guider + SamplerCustomAdvanced, Karras sigmas"),
    "amdm_sd15_img2img": (img2img, "img2img with denoise 0.6"),
    "amdm_sd15_handoff_compose": (handoff_compose, "handoff by noise level (Compose Predictions + member ranges)"),
    "amdm_sd15_windowed_compose": (windowed_compose, "windowed composable diffusion (Compose Predictions)"),
    "amdm_sd15_sweep": (sweep, "Multi-Model Sweep: labelled grid over window end x base weight"),
    "amdm_flux_two_models": (flux_two_models, "two Flux.1-dev finetunes (cfg 1, FluxGuidance), paper settings"),
    "wan22_experts_handoff": (wan22_experts_handoff, "Wan 2.2 high-noise -> low-noise expert handoff at sigma 0.875"),
    "amdm_sd15_model_guidance": (model_guidance, "weak-to-strong model guidance (autoguidance with CFG)"),
    "amdm_sd15_superposition": (superposition, "SuperDiff OR superposition of two SD1.5 models"),
}
MAIN_WORKFLOW = "amdm_sd15_two_models"

# name -> its title in ComfyUI's templates browser. The frontends (1.32 to 1.58) read nothing of a
# custom node pack's template but its file name (GET /workflow_templates lists the stems of
# example_workflows/*.json): the stem is the card's title, and again its description (with "-" and
# "_" shown as spaces), and the workflow's tab name once opened. So the file is named by its title,
# without "-", "_" and characters that file systems or URLs refuse, short enough for a card (the
# cards cut titles at about 30 characters); its thumbnail is <title>.jpg.
TEMPLATE_TITLES = {
    "amdm_sd15_two_models": "AMDM, two SD1.5 models",
    "amdm_sd15_three_members_gligen": "AMDM, three members, GLIGEN",
    "amdm_sd15_guider_custom_sigmas": "AMDM guider, custom sigmas",
    "amdm_sd15_img2img": "AMDM img2img",
    "amdm_sd15_handoff_compose": "Handoff by noise level",
    "amdm_sd15_windowed_compose": "Windowed composition",
    "amdm_sd15_sweep": "Multi Model Sweep grid",
    "amdm_flux_two_models": "AMDM, two Flux models",
    "wan22_experts_handoff": "Wan 2.2 experts handoff",
    "amdm_sd15_model_guidance": "Model guidance, weak to strong",
    "amdm_sd15_superposition": "Superposition, SuperDiff OR",
}
