"""Editing the API prompt the main command posts: finding the base and helper checkpoint loaders,
adding the base model alone next to the AMDM sampler, and the command line's overrides."""
from __future__ import annotations

import copy

from . import workflow_format


class UsageError(RuntimeError):
    """A one-line problem with what the user asked for (missing file, bad option)."""


def load_prompt(path, object_info_fn) -> dict:
    """The workflow file as an API prompt (a UI workflow converted with the server's schemas)."""
    data = workflow_format.load_workflow(path)
    if workflow_format.is_api_format(data):
        return copy.deepcopy(data)
    return workflow_format.ui_to_api(data, object_info_fn())


def find(prompt: dict, class_type: str) -> list[str]:
    return [k for k, v in prompt.items() if v["class_type"] == class_type]


def source(prompt, node_id, input_name):
    v = prompt[node_id]["inputs"].get(input_name)
    return v if isinstance(v, list) else None


def trace_to(prompt, link, class_type):
    """Follow MODEL links (through model patchers such as LoRA loaders) back to a node of class_type."""
    seen = set()
    while link and link[0] not in seen:
        seen.add(link[0])
        node = prompt[link[0]]
        if node["class_type"] == class_type:
            return link[0]
        link = node["inputs"].get("model") if isinstance(node["inputs"].get("model"), list) else None
    return None


def consumers(prompt, node_id, slot=0, class_type=None):
    return [k for k, v in prompt.items() for val in v["inputs"].values()
            if isinstance(val, list) and val[0] == node_id and val[1] == slot
            and (class_type is None or v["class_type"] == class_type)]


def model_loaders(prompt) -> tuple[str | None, str | None]:
    """(base loader id, helper loader id): the CheckpointLoaderSimple feeding the sampler's/guider's
    `model` and the one feeding the first Multi-Model Member's `model`."""
    heads = find(prompt, "AMDM_MultiModelSampler") + find(prompt, "AMDM_MultiModelGuider") + \
        find(prompt, "AMDM_MultiModelSweep")
    base = trace_to(prompt, source(prompt, heads[0], "model"), "CheckpointLoaderSimple") if heads else None
    helper = None
    for m in find(prompt, "AMDM_Member"):
        h = trace_to(prompt, source(prompt, m, "model"), "CheckpointLoaderSimple")
        if h and h != base:
            helper = h
            break
    return base, helper


class _NodeAdder:
    """Adds nodes to an API prompt under fresh numeric ids, in the order they are added."""

    def __init__(self, prompt: dict):
        self.prompt = prompt
        self.next_id = max(int(k) for k in prompt if k.isdigit()) + 1

    def __call__(self, class_type, title, **inputs) -> str:
        nid = str(self.next_id)
        self.next_id += 1
        self.prompt[nid] = {"class_type": class_type, "inputs": inputs, "_meta": {"title": title}}
        return nid


def add_baseline(prompt: dict, prefix: str) -> tuple[str | None, str | None]:
    """Add the base model alone with the same seed: a stock KSampler next to the Multi-Model
    Sampler (or CFGGuider + SamplerCustomAdvanced next to the Multi-Model Guider) with the base
    member's inputs, decoded with the same VAE. Returns (AMDM SaveImage id, baseline SaveImage id)."""
    new = _NodeAdder(prompt)
    samplers = find(prompt, "AMDM_MultiModelSampler")
    alone = _ksampler_alone(prompt, new, samplers[0]) if samplers else _guider_alone(prompt, new)
    if alone is None:
        return None, None
    alone_id, amdm_out, out_slot = alone
    decodes = consumers(prompt, amdm_out, out_slot, "VAEDecode")
    if not decodes:
        raise UsageError("the workflow does not decode the Multi-Model Sampler's latent (no VAEDecode after it)")
    vae = prompt[decodes[0]]["inputs"]["vae"]
    amdm_save = _amdm_save_node(prompt, new, decodes[0], prefix)
    dec = new("VAEDecode", "Decode: base alone", samples=[alone_id, out_slot], vae=vae)
    base_save = new("SaveImage", "Base model alone", images=[dec, 0], filename_prefix=prefix + "_base_alone")
    return amdm_save, base_save


def _ksampler_alone(prompt, new, sampler_id):
    """A stock KSampler with the Multi-Model Sampler's base inputs: (its id, the sampler's id, slot 0)."""
    s = prompt[sampler_id]["inputs"]
    alone = new("KSampler", "Base model alone (same seed)", **{k: s[k] for k in (
        "model", "positive", "negative", "latent_image", "seed", "steps", "cfg", "sampler_name", "scheduler",
        "denoise")})
    return alone, sampler_id, 0


def _guider_alone(prompt, new):
    """CFGGuider + SamplerCustomAdvanced with the Multi-Model Guider's base inputs and the same noise:
    (its id, the AMDM SamplerCustomAdvanced's id, slot 0), or None without that pair."""
    guiders = find(prompt, "AMDM_MultiModelGuider")
    advanced = [k for k in find(prompt, "SamplerCustomAdvanced")
                if guiders and source(prompt, k, "guider") and source(prompt, k, "guider")[0] == guiders[0]]
    if not advanced:
        return None
    gi, adv = prompt[guiders[0]]["inputs"], prompt[advanced[0]]["inputs"]
    cfg_guider = new("CFGGuider", "Base model alone: guider", model=gi["model"], positive=gi["positive"],
                     negative=gi["negative"], cfg=gi["cfg"])
    alone = new("SamplerCustomAdvanced", "Base model alone (same noise)", **dict(adv, guider=[cfg_guider, 0]))
    return alone, advanced[0], 0


def _amdm_save_node(prompt, new, decode_id, prefix) -> str:
    """The SaveImage after the AMDM decode (added when the workflow has none), saving under prefix_amdm."""
    saves = consumers(prompt, decode_id, 0, "SaveImage")
    if saves:
        amdm_save = saves[0]
    else:
        amdm_save = new("SaveImage", "AMDM image", images=[decode_id, 0], filename_prefix=prefix + "_amdm")
    prompt[amdm_save]["inputs"]["filename_prefix"] = prefix + "_amdm"
    return amdm_save


def apply_overrides(prompt: dict, *, seed=None, steps=None, size=None):
    for node in prompt.values():
        ins, ct = node["inputs"], node["class_type"]
        if seed is not None:
            for k in ("seed", "noise_seed"):
                if k in ins and not isinstance(ins[k], list):
                    ins[k] = seed
        if steps is not None and "steps" in ins and not isinstance(ins["steps"], list) and ct not in (
                "KSamplerAdvanced",):
            ins["steps"] = steps
        if size is not None and ct in ("EmptyLatentImage", "EmptySD3LatentImage", "ImageScale",
                                       "EmptyHunyuanLatentVideo"):
            ins["width"] = ins["height"] = size
        if size is not None and ct == "EmptyHunyuanLatentVideo":
            ins["length"] = min(ins["length"], 5)       # 2 latent frames: enough to be video, small on a CPU
        if size is not None and ct == "GLIGENTextBoxApply":   # boxes were drawn for 512 x 512
            f = size / 512
            for k in ("width", "height", "x", "y"):
                ins[k] = max(8 if k in ("width", "height") else 0, int(ins[k] * f) // 8 * 8)


def seed_of(prompt: dict):
    for nid in find(prompt, "AMDM_MultiModelSampler") + find(prompt, "RandomNoise"):
        ins = prompt[nid]["inputs"]
        return ins.get("seed", ins.get("noise_seed"))
    return None


def combo_list(object_info: dict, cls: str, name: str) -> list:
    schema = object_info.get(cls)
    if not schema:
        return []
    spec = schema["input"]["required"].get(name)
    return workflow_format.combo_options(spec) if spec else []
