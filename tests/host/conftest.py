"""In-process ComfyUI host layer (CPU): real comfy modules, real ModelPatchers from the stock
loaders, stock samplers. The only test double allowed is the load_models_gpu *recorder*.

ComfyUI comes from devtools.host (COMFYUI_PATH, else the newest host scripts/setup_env.sh set up),
at sys.path[0] and on the CPU unless AMDM_GPU=1 (the project's one rule).

torch runs on ONE CPU thread unless AMDM_TEST_THREADS (or OMP_NUM_THREADS) says otherwise: with
the tiny models one thread is about as fast, results no longer depend on the machine's core count,
and two busy torch processes on a 2-core box (tests + server, or two sessions) do not fall into
OpenMP oversubscription, which was measured at 10-15x slower.
"""
from __future__ import annotations

import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from devtools.host import (PACK_MODULE, REPO_ROOT, check_comfyui_origin, comfyui_path, comfyui_present,
                           import_pack, load_file_module, put_comfyui_first)

COMFYUI_PATH = comfyui_path()
COMFY_PRESENT = comfyui_present(COMFYUI_PATH)
TEST_NODES_INIT = REPO_ROOT / "tests" / "fixtures" / "comfy_test_nodes" / "__init__.py"


def test_threads() -> int | None:
    """Thread count the test layers give torch; None = leave torch's default (OMP_NUM_THREADS set)."""
    if os.environ.get("AMDM_TEST_THREADS"):
        return int(os.environ["AMDM_TEST_THREADS"])
    return None if os.environ.get("OMP_NUM_THREADS") else 1


if test_threads() is not None:
    import torch

    torch.set_num_threads(test_threads())

if COMFY_PRESENT:
    put_comfyui_first(COMFYUI_PATH)


@pytest.fixture(scope="session")
def comfy(tmp_path_factory):
    """Namespace of imported ComfyUI modules: comfy, model_management, samplers, sample,
    sampler_helpers, model_patcher, model_base, model_sampling, latent_formats, sd, utils, lora,
    patcher_extension, k_diffusion (comfy.k_diffusion.sampling), nodes, folder_paths, args, path."""
    if not COMFY_PRESENT:
        pytest.fail(f"ComfyUI not found at {COMFYUI_PATH}: run scripts/setup_env.sh or set COMFYUI_PATH",
                    pytrace=False)
    import comfy as comfy_pkg
    import comfy.cli_args
    import comfy.k_diffusion.sampling
    import comfy.latent_formats
    import comfy.lora
    import comfy.model_base
    import comfy.model_management
    import comfy.model_patcher
    import comfy.model_sampling
    import comfy.patcher_extension
    import comfy.sample
    import comfy.sampler_helpers
    import comfy.samplers
    import comfy.sd
    import comfy.utils
    import folder_paths
    import nodes

    try:
        check_comfyui_origin(COMFYUI_PATH)
    except ImportError as e:
        pytest.fail(str(e), pytrace=False)

    # Keep in-process saves (SaveImage, SaveLatent, temp previews) out of the ComfyUI tree.
    io_dir = tmp_path_factory.mktemp("comfy_io")
    for sub, setter in (("output", folder_paths.set_output_directory), ("temp", folder_paths.set_temp_directory),
                        ("input", folder_paths.set_input_directory)):
        (io_dir / sub).mkdir()
        setter(str(io_dir / sub))

    return SimpleNamespace(
        comfy=comfy_pkg, model_management=comfy.model_management, samplers=comfy.samplers,
        sample=comfy.sample, sampler_helpers=comfy.sampler_helpers, model_patcher=comfy.model_patcher,
        model_base=comfy.model_base, model_sampling=comfy.model_sampling, latent_formats=comfy.latent_formats,
        sd=comfy.sd, utils=comfy.utils, lora=comfy.lora, patcher_extension=comfy.patcher_extension,
        k_diffusion=comfy.k_diffusion.sampling, nodes=nodes, folder_paths=folder_paths,
        args=comfy.cli_args.args, path=COMFYUI_PATH,
    )


@pytest.fixture(scope="session")
def tiny_models(comfy, tiny_model_set):
    """TinyModels (devtools/tiny_models.py) with its folders registered in folder_paths, so stock
    loaders list them: .unet/.checkpoint/.lora dicts (variant -> Path), .vae, .base_dir."""
    models = tiny_model_set.models_dir
    for folder_name, sub in (("diffusion_models", "unet"), ("checkpoints", "checkpoints"),
                             ("vae", "vae"), ("loras", "loras")):
        comfy.folder_paths.add_model_folder_path(folder_name, str(models / sub), is_default=True)
    return tiny_model_set


@pytest.fixture(scope="session")
def tiny_clip_checkpoint(tiny_models):
    """File name of tiny_sd15_clip.safetensors (UNet a + TAESD + random fp8 CLIP-L, ~150 MB,
    ~5 s): only for tests that need the stock CheckpointLoaderSimple -> CLIPTextEncode route."""
    from devtools import tiny_models as gen
    return gen.make_models(tiny_models.base_dir, variants=(), clip=True).clip_checkpoint.name


@pytest.fixture(scope="session")
def test_nodes():
    """The fixture node pack tests/fixtures/comfy_test_nodes (seeded_conditioning, latent_stats,
    AMDMTest_* classes), loaded in-process."""
    return load_file_module("amdm_comfy_test_nodes", TEST_NODES_INIT)


@pytest.fixture(scope="session")
def load_unet(comfy, tiny_models):
    """load_unet(name, weight_dtype="default") -> ModelPatcher via the stock nodes.UNETLoader.
    name is a variant ("a", "b", "c") or a file name under models/unet. Each file is loaded once
    per session; every call returns a fresh .clone() (shared weights, private patches/options)."""
    cache = {}

    def _load(name: str, weight_dtype: str = "default"):
        file_name = tiny_models.unet[name].name if name in tiny_models.unet else name
        key = (file_name, weight_dtype)
        if key not in cache:
            cache[key] = comfy.nodes.UNETLoader().load_unet(file_name, weight_dtype)[0]
        return cache[key].clone()

    return _load


@pytest.fixture
def model_a(load_unet):
    return load_unet("a")


@pytest.fixture
def model_b(load_unet):
    return load_unet("b")


@pytest.fixture(scope="session")
def load_lora(comfy, tiny_models):
    """load_lora(model, name="a", strength=1.0) -> patched clone via the stock LoraLoaderModelOnly."""
    def _apply(model, name: str = "a", strength: float = 1.0):
        file_name = tiny_models.lora[name].name if name in tiny_models.lora else name
        return comfy.nodes.LoraLoaderModelOnly().load_lora_model_only(model, file_name, strength)[0]
    return _apply


@pytest.fixture(scope="session")
def make_cond(test_nodes):
    """make_cond(value_or_seed=0, scale=1.0) -> CONDITIONING [[tensor(1, 77, 768), {"pooled_output":
    tensor(1, 768)}]]. An int is a seed (same values as the server's AMDMTest_Conditioning node);
    a float fills every element with that value (0.0 gives an all-zero "empty" conditioning)."""
    import torch

    def _make(value_or_seed=0, scale: float = 1.0):
        if isinstance(value_or_seed, bool) or not isinstance(value_or_seed, (int, float)):
            raise TypeError(f"make_cond takes an int seed or a float fill value, not {value_or_seed!r}")
        if isinstance(value_or_seed, int):
            return test_nodes.seeded_conditioning(value_or_seed, scale)
        v = float(value_or_seed) * scale
        return [[torch.full((1, test_nodes.TOKENS, test_nodes.WIDTH), v),
                 {"pooled_output": torch.full((1, test_nodes.WIDTH), v)}]]

    return _make


@pytest.fixture(scope="session")
def empty_latent(comfy):
    """empty_latent(width=64, height=64, batch=1) -> LATENT dict from the stock EmptyLatentImage."""
    def _make(width: int = 64, height: int = 64, batch: int = 1):
        return comfy.nodes.EmptyLatentImage().generate(width, height, batch)[0]
    return _make


@pytest.fixture(scope="session")
def stock_ksampler(comfy, make_cond, empty_latent):
    """stock_ksampler(model, positive=None, negative=None, latent=None, *, seed=42, steps=4,
    cfg=2.0, sampler_name="euler", scheduler="normal", denoise=1.0) -> LATENT dict from the stock
    KSampler node (nodes.common_ksampler). Defaults: positive make_cond(0), negative make_cond(0.0),
    latent empty_latent(64, 64, 1)."""
    def _run(model, positive=None, negative=None, latent=None, *, seed=42, steps=4, cfg=2.0,
             sampler_name="euler", scheduler="normal", denoise=1.0):
        positive = make_cond(0) if positive is None else positive
        negative = make_cond(0.0) if negative is None else negative
        latent = empty_latent() if latent is None else latent
        return comfy.nodes.KSampler().sample(model, seed, steps, cfg, sampler_name, scheduler,
                                             positive, negative, latent, denoise=denoise)[0]
    return _run


@dataclass
class LoadModelsGpuCall:
    models: list                     # the patchers passed, in order
    kwargs: dict = field(default_factory=dict)  # memory_required, force_full_load, ...


@dataclass
class LoadModelsGpuRecorder:
    calls: list = field(default_factory=list)

    def calls_with(self, patcher) -> list:
        """Calls whose model list contains this patcher (identity) or a clone of it."""
        return [c for c in self.calls if any(m is patcher or m.is_clone(patcher) for m in c.models)]


@pytest.fixture
def record_load_models_gpu(comfy, monkeypatch):
    """Wraps comfy.model_management.load_models_gpu with a recorder that still calls the real
    function (every caller goes through the module attribute). Yields a LoadModelsGpuRecorder."""
    recorder = LoadModelsGpuRecorder()
    real = comfy.model_management.load_models_gpu

    def _recording(models, *args, **kwargs):
        names = ("memory_required", "force_patch_weights", "minimum_memory_required", "force_full_load")
        recorded = dict(zip(names, args))
        recorded.update(kwargs)
        recorder.calls.append(LoadModelsGpuCall(models=list(models), kwargs=recorded))
        return real(models, *args, **kwargs)

    monkeypatch.setattr(comfy.model_management, "load_models_gpu", _recording)
    yield recorder


@pytest.fixture(scope="session")
def pack(comfy):
    """The repo root imported as package `amdm_pack` (as ComfyUI imports custom_nodes/<pack>, it is
    not on sys.path: relative imports inside the pack resolve through amdm_pack.*)."""
    if not (REPO_ROOT / "__init__.py").is_file():
        pytest.fail(f"the pack has no {REPO_ROOT / '__init__.py'}: nothing to import as {PACK_MODULE}", pytrace=False)
    try:
        return import_pack()
    except Exception:
        pytest.fail(f"importing the pack as {PACK_MODULE} failed:\n{traceback.format_exc()}", pytrace=False)


@pytest.fixture(scope="session")
def amdm(pack):
    """AMDMRunner (tests/host/amdm_run.py): calls the pack's nodes as the executor would."""
    mod = load_file_module("amdm_test_run", Path(__file__).parent / "amdm_run.py")
    runner = mod.AMDMRunner(pack)
    runner.count_calls, runner.random_latent = mod.count_calls, mod.random_latent
    return runner


@pytest.fixture(autouse=True)
def _drop_stale_loaded_models(comfy):
    """Earlier failing tests (pytest keeps the last failure's traceback, and with it that test's MODEL
    clones) leave LoadedModel entries whose patcher is gone (a leak would be caught by
    test_reliability_faults.py). ComfyUI never removes them and runs a full gc.collect() in every
    load_models_gpu call while one exists; drop the dead ones so these tests' timing and logs do not
    depend on what ran before. Dead entries are inert otherwise (never matched, never unloaded)."""
    mm = comfy.model_management
    if any(lm.is_dead() for lm in mm.current_loaded_models):
        mm.current_loaded_models[:] = [lm for lm in mm.current_loaded_models if not lm.is_dead()]
    yield
