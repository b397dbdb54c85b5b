"""Reliability, in-process: faults, clean-up, no mutation of the inputs, no leaked models.

Faults: an exception inside one member's forward (helper or base, at its first evaluation, in the
middle of the window, after it; LoRA-patched clones of one checkpoint; Compose Predictions; the
GUIDER route), interrupts (in and after the window, several routes), a member evicted from memory
between runs, a cached GUIDER reused after a failed run. After each: the exception reaches the caller
unchanged, the MODEL and CONDITIONING objects passed in are unchanged (deep fingerprints of every
ModelPatcher field: model_options, patches, object patches, wrappers, callbacks, hooks...), no
BaseModel keeps a current_patcher, and the next run is bitwise equal to the run made before the
fault (and a stock KSampler on the base model to its own earlier output: no weight patch leaked).

Leaks: ComfyUI's own leak detector (LoadedModel.is_dead after gc) must find nothing after runs with
temporary MODEL objects (a LoRA loader output that is replaced, a cloned model that is dropped), and
repeated runs must not grow current_loaded_models.

Interrupt in and after the window for the Multi-Model Sampler's basic case, and the plain
no-mutation check for one configuration, are in test_amdm_integration.py; this file extends them.
"""
from __future__ import annotations

import gc
import hashlib
import weakref

import pytest
import torch


class InjectedFault(RuntimeError):
    pass


# -- fingerprints (value-based, deep) -----------------------------------------------------------------

def fingerprint(obj, depth=0):
    """A comparable, deep, value-based description of obj: tensors by dtype/shape/bytes, containers
    recursively, callables and other objects by identity (a replaced function or object is a change)."""
    if depth > 12:
        return ("deep", id(obj))
    if torch.is_tensor(obj):
        t = obj.detach().to("cpu").contiguous()
        digest = hashlib.sha256(t.reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest() if t.numel() else ""
        return ("tensor", tuple(t.shape), str(t.dtype), str(obj.device), digest)
    if isinstance(obj, (str, int, float, bool, type(None), bytes)):
        return ("value", repr(obj))
    if isinstance(obj, dict):
        return ("dict", type(obj).__name__, tuple(sorted(((repr(k), fingerprint(v, depth + 1)) for k, v in obj.items()),
                                                         key=lambda kv: kv[0])))
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, tuple(fingerprint(v, depth + 1) for v in obj))
    if isinstance(obj, (set, frozenset)):
        return ("set", tuple(sorted(repr(fingerprint(v, depth + 1)) for v in obj)))
    if hasattr(obj, "__members__") or type(obj).__module__ == "enum":
        return ("enum", repr(obj))
    return ("object", type(obj).__name__, id(obj))


# Not compared: `backup`, `object_patches_backup` and `pinned`, which ComfyUI shares by reference between a
# patcher and all its clones (ModelPatcher.clone) and fills while any clone is loaded: load state of the
# shared weights, changed by every stock run of any clone, not configuration of the MODEL input.
PATCHER_FIELDS = (
    "model_options", "patches", "patches_uuid", "object_patches", "weight_wrapper_patches", "attachments",
    "additional_models", "callbacks", "wrappers", "injections",
    "is_injected", "skip_injection", "hook_patches", "hook_patches_backup", "hook_backup", "cached_hook_patches",
    "current_hooks", "forced_hooks", "hook_mode", "parent", "load_device", "offload_device",
    "weight_inplace_update", "force_cast_weights",
)


def snapshot_model(m) -> dict:
    out = {f: fingerprint(getattr(m, f, "<absent>")) for f in PATCHER_FIELDS}
    out["model"] = ("object", type(m.model).__name__, id(m.model))
    return out


def snapshot(models, conds) -> tuple:
    return [snapshot_model(m) for m in models], [(id(c), fingerprint(c)) for c in conds]


def assert_unchanged(before, models, conds):
    after = snapshot(models, conds)
    for i, (b, a) in enumerate(zip(before[0], after[0])):
        changed = [k for k in b if b[k] != a[k]]
        assert not changed, f"MODEL input {i} changed: {changed}"
    for i, (b, a) in enumerate(zip(before[1], after[1])):
        assert b == a, f"CONDITIONING input {i} changed"


def assert_models_released(comfy, *models):
    for m in models:
        assert m.model.current_patcher is None, "a BaseModel still has a current_patcher after the run"
    assert not comfy.model_management.processing_interrupted(), "the interrupt flag was left set"


def settle():
    """Collect garbage once, at the end of a test, while it still holds its MODEL objects.

    The pack's private clones are freed only by the garbage collector (see
    test_private_clones_are_freed_without_waiting_for_the_garbage_collector); if they died in the
    same gc pass as the test's temporary MODEL clones, ComfyUI would keep stale LoadedModel entries,
    and every later load_models_gpu call in the process would run a full gc.collect() (0.3-0.7 s
    here). The leak has its own tests below; the other tests collect while their models are alive
    so they neither depend on it nor slow the rest of the suite down."""
    gc.collect()


def dead_loaded_models(comfy):
    """ComfyUI's own leak check: LoadedModel entries whose patcher is gone while its model lives on."""
    gc.collect()
    return [lm for lm in comfy.model_management.current_loaded_models if lm.is_dead()]


# -- models that fail on demand ----------------------------------------------------------------------

def failing(model, at, action="raise", every_run=True):
    """A clone of `model` whose at-th UNet call (per run when every_run) raises InjectedFault or
    presses ComfyUI's cancel button. Returns (clone, calls)."""
    import comfy.model_management
    m = model.clone()
    calls = []
    state = {"armed": True}

    def wrapper(apply_model, args):
        calls.append(float(args["timestep"].flatten()[0]))
        if len(calls) == at and state["armed"]:
            if not every_run:
                state["armed"] = False
            if action == "raise":
                raise InjectedFault(f"injected fault at UNet call {at}")
            comfy.model_management.interrupt_current_processing(True)
        return apply_model(args["input"], args["timestep"], **args["c"])
    m.set_model_unet_function_wrapper(wrapper)
    return m, calls


# -- a run set-up shared by the fault tests ------------------------------------------------------------

STEPS = 5
WINDOW = dict(window_unit="steps", window_start=1, window_end=2)   # helpers run steps 0..2, the base 0..4


class Runs:
    def __init__(self, amdm, comfy, make_cond, empty_latent, stock_ksampler):
        self.amdm, self.comfy, self.stock = amdm, comfy, stock_ksampler
        self.pos, self.neg, self.pos_b = make_cond(1), make_cond(0.0), make_cond(2)
        self.empty_latent = empty_latent
        self.keep = []

    def aggregation(self, route, window_end=2):
        if route == "compose":
            return self.amdm.compose(mode="average", window_unit="steps", window_start=0, window_end=window_end)
        return self.amdm.aggregation(**dict(WINDOW, window_end=window_end))

    def run(self, base, helper, route="sampler", seed=11, guider=None, window_end=2):
        self.keep += [base, helper]        # alive until settle() at the end of the test
        chain = self.amdm.chain(helper, self.pos_b, self.neg, weight=0.866)
        agg = self.aggregation(route, window_end)
        if route in ("sampler", "compose"):
            return self.amdm.sample(base, self.pos, self.neg, chain, self.empty_latent(), seed=seed, steps=STEPS,
                                    base_weight=0.5, aggregation=agg)[0]["samples"]
        import comfy_extras.nodes_custom_sampler as cs
        with torch.inference_mode():
            guider = guider or self.amdm.guider(base, self.pos, self.neg, chain, base_weight=0.5, aggregation=agg)
            noise = cs.RandomNoise.execute(noise_seed=seed).args[0]
            sigmas = cs.BasicScheduler.execute(model=base, scheduler="normal", steps=STEPS, denoise=1.0).args[0]
            return cs.SamplerCustomAdvanced.execute(
                noise=noise, guider=guider, sampler=self.comfy.samplers.sampler_object("euler"), sigmas=sigmas,
                latent_image=self.empty_latent()).args[0]["samples"]

    def stock_run(self, model, seed=11):
        return self.stock(model, self.pos, self.neg, self.empty_latent(), seed=seed, steps=STEPS)["samples"]


@pytest.fixture
def runs(amdm, comfy, make_cond, empty_latent, stock_ksampler):
    r = Runs(amdm, comfy, make_cond, empty_latent, stock_ksampler)
    yield r
    settle()                               # r.keep still holds every MODEL the test ran


FAULTS = [
    # id, route, which member fails, at which of its UNet calls (helpers: steps 0..2, base: steps 0..4),
    # and how: an exception inside its forward, or ComfyUI's cancel button pressed during that call
    ("helper-first-evaluation", "sampler", "helper", 1, "raise"),
    ("helper-mid-window", "sampler", "helper", 2, "raise"),
    ("base-mid-window", "sampler", "base", 2, "raise"),
    ("base-after-window", "sampler", "base", 4, "raise"),
    ("lora-clone-helper-in-window", "sampler", "lora_clone", 2, "raise"),
    ("compose-helper-mid-window", "compose", "helper", 2, "raise"),
    ("guider-route-helper-mid-window", "guider", "helper", 2, "raise"),
    ("base-after-window", "sampler", "base", 4, "interrupt"),
    ("compose-helper-mid-window", "compose", "helper", 2, "interrupt"),
    ("guider-route-helper-mid-window", "guider", "helper", 2, "interrupt"),
]


def _members(kind, load_unet, load_lora):
    """(base, helper): separate checkpoints, or (lora_clone) the same checkpoint with a LoRA on the
    helper, so the pack swaps weight patches on shared weights inside the window."""
    if kind == "lora_clone":
        return load_unet("a"), load_lora(load_unet("a"))
    return load_unet("a"), load_unet("b")


@pytest.mark.parametrize("case, route, who, at, action", FAULTS, ids=[f"{f[4]}-{f[0]}" for f in FAULTS])
def test_fault_leaves_everything_clean_and_the_next_run_identical(runs, comfy, load_unet, load_lora, case, route, who,
                                                                  at, action):
    base, helper = _members(who, load_unet, load_lora)
    # LoRA-patched clones swap weight patches before every member evaluation in the window (slow on
    # CPU): a window of one aggregated step (helper steps 0..1) keeps the case short.
    end = 1 if who == "lora_clone" else 2
    reference = runs.run(base, helper, route, window_end=end)
    stock_reference = runs.stock_run(base)
    before = snapshot([base, helper], [runs.pos, runs.neg, runs.pos_b])

    if who == "base":
        bad_base, calls = failing(base, at, action)
        bad_helper = helper
    else:
        bad_helper, calls = failing(helper, at, action)
        bad_base = base
    bad_before = snapshot([bad_base, bad_helper], [])
    expected = InjectedFault if action == "raise" else comfy.model_management.InterruptProcessingException
    with pytest.raises(expected) as exc:
        runs.run(bad_base, bad_helper, route, window_end=end)
    if action == "raise":
        assert str(exc.value) == f"injected fault at UNet call {at}"      # the member's own exception, unwrapped
    assert len(calls) == at, "the run went on after the fault"
    del exc

    assert_unchanged(before, [base, helper], [runs.pos, runs.neg, runs.pos_b])
    assert_unchanged(bad_before, [bad_base, bad_helper], [])
    assert_models_released(comfy, base, helper)
    assert torch.equal(runs.run(base, helper, route, window_end=end), reference), \
        "the next run differs from the run before the fault"
    assert torch.equal(runs.stock_run(base), stock_reference), "a stock KSampler on the base model changed"


@pytest.mark.parametrize("evict", ["unload_all_models", "evict_helper_only", "helper_reloaded_from_disk",
                                   "lora_clone_unload_all"])
def test_member_evicted_between_runs_gives_the_same_bytes(runs, comfy, load_unet, load_lora, tiny_models, evict):
    mm = comfy.model_management
    lora = evict.startswith("lora")
    base, helper = _members("lora_clone" if lora else "plain", load_unet, load_lora)
    end = 1 if lora else 2
    first = runs.run(base, helper, window_end=end)
    if evict in ("unload_all_models", "lora_clone_unload_all"):
        mm.unload_all_models()
        assert not any(lm.model is not None and lm.model.is_clone(helper) and lm.model.loaded_size() > 0
                       for lm in mm.current_loaded_models)
    elif evict == "evict_helper_only":
        keep = [lm for lm in mm.current_loaded_models if lm.model is not None and lm.model.is_clone(base)]
        mm.free_memory(1e30, mm.get_torch_device(), keep_loaded=keep)
    else:
        helper = comfy.nodes.UNETLoader().load_unet(tiny_models.unet["b"].name, "default")[0]
    assert torch.equal(runs.run(base, helper, window_end=end), first)


def test_cached_guider_reused_after_a_failed_run(runs, comfy, model_a, model_b):
    """ComfyUI caches a GUIDER node's output: the same MultiModelGuider object is sampled again by the
    next prompt. A failed run must not leave state in it."""
    reference = runs.run(model_a, model_b, "guider")
    flaky, calls = failing(model_b, 2, "raise", every_run=False)      # fails in the first run only
    chain = runs.amdm.chain(flaky, runs.pos_b, runs.neg, weight=0.866)
    guider = runs.amdm.guider(model_a, runs.pos, runs.neg, chain, base_weight=0.5,
                              aggregation=runs.aggregation("guider"))
    with pytest.raises(InjectedFault):
        runs.run(model_a, flaky, "guider", guider=guider)
    assert torch.equal(runs.run(model_a, flaky, "guider", guider=guider), reference)
    assert torch.equal(runs.run(model_a, flaky, "guider", guider=guider), reference)
    assert_models_released(comfy, model_a, model_b)


# -- no mutation of MODEL and CONDITIONING inputs -------------------------------------------------------

def rich_inputs(comfy, load_unet, load_lora, make_cond):
    """Inputs that carry everything a MODEL/CONDITIONING can carry: wrappers, attention patches, nested
    transformer_options, object patches, LoRA weight patches, callbacks; conditioning with masks,
    strengths, timestep ranges, areas and user keys."""
    import comfy_extras.nodes_model_advanced as adv
    import comfy.patcher_extension as pe

    def passthrough(apply_model, args):
        return apply_model(args["input"], args["timestep"], **args["c"])

    def attn1(q, k, v, extra_options):
        return q, k, v

    def outer_wrapper(executor, *args, **kwargs):
        return executor(*args, **kwargs)

    def dress(m):
        m = adv.ModelSamplingDiscrete().patch(m, "eps", False)[0]     # an object patch (model_sampling)
        m.set_model_unet_function_wrapper(passthrough)
        m.set_model_attn1_patch(attn1)
        m.model_options["transformer_options"]["user_key"] = {"nested": [1, 2, {"deep": torch.ones(2)}]}
        m.add_callback(pe.CallbacksMP.ON_PRE_RUN, lambda patcher: None)
        m.add_wrapper(pe.WrappersMP.OUTER_SAMPLE, outer_wrapper)
        return m

    base = dress(load_unet("a"))
    helper = dress(load_lora(load_unet("b")))                            # LoRA weight patches on a helper
    helper2 = dress(load_unet("c"))

    def cond(seed, **extra):
        c = make_cond(seed)
        c[0][1].update(extra)
        return c
    mask = torch.zeros(1, 8, 8)
    mask[:, :4] = 1.0
    pos = cond(1, strength=0.9, user={"tags": ["a", "b"]})
    pos.append([make_cond(4)[0][0], {"pooled_output": make_cond(4)[0][1]["pooled_output"], "area": (4, 4, 0, 0),
                                     "strength": 0.5}])
    neg = make_cond(0.0)
    pos_b = cond(2, mask=mask, mask_strength=1.0, set_area_to_bounds=False)
    pos_c = cond(3, start_percent=0.0, end_percent=0.6)
    return [base, helper, helper2], [pos, neg, pos_b, pos_c]


SCENARIOS = ["amdm", "amdm-all-members-slerp", "compose", "guider", "validation-error", "forward-fault",
             "interrupt", "cfg-pp-refused"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_model_and_conditioning_inputs_are_not_mutated(amdm, comfy, load_unet, load_lora, make_cond, empty_latent,
                                                       scenario):
    (base, helper, helper2), (pos, neg, pos_b, pos_c) = rich_inputs(comfy, load_unet, load_lora, make_cond)
    before = snapshot([base, helper, helper2], [pos, neg, pos_b, pos_c])
    latent = empty_latent()
    latent_before = fingerprint(latent)
    h2 = helper2
    if scenario == "forward-fault":
        h2 = failing(helper2, 2, "raise")[0]
    elif scenario == "interrupt":
        h2 = failing(helper2, 2, "interrupt")[0]
    chain = amdm.chain(helper, pos_b, neg, cfg=3.0, weight=0.7)
    chain = amdm.chain(h2, pos_c, neg, cfg=2.5, weight=0.4, previous=chain)
    agg = amdm.aggregation(window_unit="steps", window_start=1, window_end=2)
    dev = None
    sampler_name = "euler"
    if scenario == "amdm-all-members-slerp":
        agg = amdm.aggregation(mode="slerp", window_unit="steps", window_start=1, window_end=2)
        dev = amdm.deviation(members="all", mode="clamped")
    elif scenario == "compose":
        agg = amdm.compose(mode="composable", window_unit="steps", window_start=0, window_end=2)
    elif scenario == "cfg-pp-refused":
        sampler_name = "euler_cfg_pp"
    expected = {"validation-error": ValueError, "forward-fault": InjectedFault, "cfg-pp-refused": ValueError,
                "interrupt": comfy.model_management.InterruptProcessingException}.get(scenario)

    def go():
        if scenario == "guider":
            import comfy_extras.nodes_custom_sampler as cs
            with torch.inference_mode():
                g = amdm.guider(base, pos, neg, chain, base_weight=0.5, aggregation=agg)
                sigmas = cs.BasicScheduler.execute(model=base, scheduler="karras", steps=5, denoise=1.0).args[0]
                return cs.SamplerCustomAdvanced.execute(
                    noise=cs.RandomNoise.execute(noise_seed=2).args[0], guider=g,
                    sampler=comfy.samplers.sampler_object("dpmpp_2m"), sigmas=sigmas, latent_image=latent).args[0]
        members = chain
        if scenario == "validation-error":      # a third helper with another latent space, refused up front
            odd = load_unet("b")
            odd.add_object_patch("latent_format", comfy.latent_formats.SDXL())
            members = amdm.chain(odd, pos_b, neg, weight=0.3, previous=chain)
        return amdm.sample(base, pos, neg, members, latent, seed=5, steps=5, base_weight=0.5, aggregation=agg,
                           deviation=dev, sampler_name=sampler_name)[0]

    if expected is None:
        out = go()
        assert torch.isfinite(out["samples"]).all()
    else:
        with pytest.raises(expected):
            go()
    settle()
    assert_unchanged(before, [base, helper, helper2], [pos, neg, pos_b, pos_c])
    assert fingerprint(latent) == latent_before, "the LATENT input changed"
    assert_models_released(comfy, base, helper, helper2)


# -- leaks -----------------------------------------------------------------------------------------------

def test_no_stale_loaded_models_after_temporary_models_are_released(amdm, comfy, model_a, model_b, make_cond,
                                                                    empty_latent, caplog):
    """A MODEL that is an intermediate output (e.g. a LoRA loader's clone, dropped from ComfyUI's cache
    when its strength changes) must be released cleanly after an AMDM run, as after a stock KSampler run:
    ComfyUI's own leak detector (LoadedModel.is_dead) must find nothing, and no 'memory leak' warning
    is logged by the next load."""
    pos, neg = make_cond(1), make_cond(0.0)
    stale_before = {id(lm) for lm in dead_loaded_models(comfy)}
    base, helper = model_a.clone(), model_b.clone()          # temporary outputs of upstream nodes
    amdm.sample(base, pos, neg, amdm.chain(helper, make_cond(2), neg, weight=0.866), empty_latent(), steps=4,
                base_weight=0.5, aggregation=amdm.aggregation(window_unit="steps", window_start=1, window_end=2))
    del base, helper                                         # the upstream node's output is replaced
    dead = [lm for lm in dead_loaded_models(comfy) if id(lm) not in stale_before]
    caplog.clear()
    if stale_before:                                          # earlier tests' entries would log too
        leak_logs = []
    comfy.nodes.KSampler().sample(model_a, 1, 2, 2.0, "euler", "normal", pos, neg, empty_latent())
    if not stale_before:
        leak_logs = [r.getMessage() for r in caplog.records if "leak" in r.getMessage().lower()]
    assert not dead and not leak_logs, (
        f"{len(dead)} stale LoadedModel entr(y/ies) (patcher gone, BaseModel alive) after the AMDM run; "
        f"ComfyUI logged: {leak_logs}")


def test_private_clones_are_freed_without_waiting_for_the_garbage_collector(amdm, comfy, model_a, model_b, make_cond,
                                                                            empty_latent, monkeypatch):
    """The pack's private ModelPatcher clones (base clone, helper clones) must be freed by reference
    counting when the node returns, as the stock KSampler's objects are: clones kept alive by a
    reference cycle outlive the run and die together with their parents in a later gc pass, which is
    what leaves ComfyUI's LoadedModel entries stale (see the test above)."""
    clones = []
    real_clone = comfy.model_patcher.ModelPatcher.clone

    def recording_clone(self, *args, **kwargs):
        c = real_clone(self, *args, **kwargs)
        clones.append(weakref.ref(c))
        return c
    pos, neg = make_cond(1), make_cond(0.0)
    chain = amdm.chain(model_b, make_cond(2), neg, weight=0.866)
    agg = amdm.aggregation(window_unit="steps", window_start=1, window_end=2)
    monkeypatch.setattr(comfy.model_patcher.ModelPatcher, "clone", recording_clone)
    gc.collect()
    gc.disable()
    try:
        amdm.sample(model_a, pos, neg, chain, empty_latent(), steps=4, base_weight=0.5, aggregation=agg)
        alive = sum(r() is not None for r in clones)
    finally:
        gc.enable()
    assert clones, "the pack made no private clone (nothing to check)"
    assert alive == 0, f"{alive} of {len(clones)} private ModelPatcher clones outlive the run (reference cycle)"


def test_repeated_runs_do_not_accumulate_loaded_models(amdm, comfy, model_a, model_b, make_cond, empty_latent):
    pos, neg = make_cond(1), make_cond(0.0)
    chain = amdm.chain(model_b, make_cond(2), neg, weight=0.866)
    agg = amdm.aggregation(window_unit="steps", window_start=1, window_end=1)
    bad = failing(model_b, 1)[0]            # held by the test: this checks accumulation, not stale entries
    sizes = []
    for i in range(4):
        if i == 2:                           # one failing run in between
            with pytest.raises(InjectedFault):
                amdm.sample(model_a, pos, neg, amdm.chain(bad, make_cond(2), neg, weight=0.866),
                            empty_latent(), steps=3, base_weight=0.5, aggregation=agg)
        amdm.sample(model_a, pos, neg, chain, empty_latent(), steps=3, base_weight=0.5, aggregation=agg)
        gc.collect()
        comfy.model_management.cleanup_models()
        sizes.append(len(comfy.model_management.current_loaded_models))
    assert sizes[-1] <= sizes[0], f"current_loaded_models grows with every run: {sizes}"
