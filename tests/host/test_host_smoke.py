"""Proves the in-process host harness: tiny models load through the stock loaders as SD1.5/EPS,
the stock KSampler is deterministic and finite on them, variants and the LoRA change outputs."""

import pytest
import torch

from devtools import tiny_models as generator


def test_tiny_unets_load_as_sd15_eps(comfy, model_a, model_b):
    import comfy.supported_models

    for m in (model_a, model_b):
        assert isinstance(m, comfy.model_patcher.ModelPatcher)
        assert isinstance(m.model, comfy.model_base.BaseModel)
        assert type(m.model.model_config) is comfy.supported_models.SD15
        assert m.model.model_type == comfy.model_base.ModelType.EPS
        latent_format = m.get_model_object("latent_format")
        assert type(latent_format) is comfy.latent_formats.SD15
        assert latent_format.scale_factor == pytest.approx(0.18215)
        ms = m.get_model_object("model_sampling")
        assert isinstance(ms, comfy.model_sampling.EPS)
        assert isinstance(ms, comfy.model_sampling.ModelSamplingDiscrete)
        assert float(ms.sigma_max) == pytest.approx(14.6146, abs=1e-3)
        assert float(ms.sigma_min) == pytest.approx(0.0292, abs=1e-3)
        assert m.model.diffusion_model.in_channels == 4
        assert m.model.model_config.unet_config["context_dim"] == 768
    assert model_a.model is not model_b.model


def test_stock_ksampler_deterministic_and_finite(model_a, stock_ksampler):
    first = stock_ksampler(model_a, seed=42)["samples"]
    again = stock_ksampler(model_a, seed=42)["samples"]
    other_seed = stock_ksampler(model_a, seed=43)["samples"]
    assert first.shape == (1, 4, 8, 8)
    assert first.dtype == torch.float32
    assert torch.isfinite(first).all()
    assert first.std() > 1.0  # not collapsed to a constant
    assert torch.equal(first, again)
    assert (first - other_seed).abs().max() > 1.0


def test_reference_run_statistics(model_a, stock_ksampler):
    """The default run matches devtools.tiny_models.REFERENCE_RUN (checked on the torch version it was
    measured with): catches accidental changes of the generator or of the fixtures' defaults."""
    ref = generator.REFERENCE_RUN
    s = stock_ksampler(model_a, seed=42)["samples"]
    if torch.__version__.startswith(ref["torch"]):
        assert s.mean().item() == pytest.approx(ref["mean"], abs=1e-2)  # mean of values ~ +-130
        assert s.std().item() == pytest.approx(ref["std"], rel=1e-4)


def test_models_a_b_c_differ(load_unet, stock_ksampler):
    lat = {v: stock_ksampler(load_unet(v), seed=7)["samples"] for v in ("a", "b", "c")}
    for x, y in (("a", "b"), ("a", "c"), ("b", "c")):
        assert (lat[x] - lat[y]).abs().mean() > 1.0, (x, y)


def test_conditioning_changes_output(model_a, make_cond, stock_ksampler):
    c1, c2 = make_cond(1), make_cond(2)
    assert torch.equal(make_cond(1)[0][0], c1[0][0])
    assert c1[0][0].shape == (1, 77, 768) and c1[0][1]["pooled_output"].shape == (1, 768)
    assert not torch.equal(c1[0][0], c2[0][0])
    x1 = stock_ksampler(model_a, positive=c1, seed=5)["samples"]
    x2 = stock_ksampler(model_a, positive=c2, seed=5)["samples"]
    assert (x1 - x2).abs().max() > 1e-2


def test_lora_changes_output_and_leaves_base_untouched(model_a, load_lora, stock_ksampler):
    base = stock_ksampler(model_a, seed=42)["samples"]
    patched = load_lora(model_a, "a", 1.0)
    assert patched is not model_a and patched.is_clone(model_a)
    assert len(patched.patches) == 2  # both kohya keys mapped onto UNet weights
    with_lora = stock_ksampler(patched, seed=42)["samples"]
    assert torch.isfinite(with_lora).all()
    assert (with_lora - base).abs().mean() > 0.05
    # the base patcher still samples exactly as before (weights were unpatched)
    assert torch.equal(stock_ksampler(model_a, seed=42)["samples"], base)
    # strength 0 is a no-op
    assert torch.equal(stock_ksampler(load_lora(model_a, "a", 0.0), seed=42)["samples"], base)


def test_checkpoint_and_vae_decode(comfy, tiny_models, stock_ksampler, model_a):
    model, clip, vae = comfy.nodes.CheckpointLoaderSimple().load_checkpoint(tiny_models.checkpoint["a"].name)[:3]
    assert clip is None  # no text encoder in the tiny checkpoints
    lat = stock_ksampler(model, seed=42)
    assert torch.equal(lat["samples"], stock_ksampler(model_a, seed=42)["samples"])  # same UNet as unet_a
    img = comfy.nodes.VAEDecode().decode(vae, lat)[0]
    assert img.shape == (1, 64, 64, 3)
    assert torch.isfinite(img).all() and img.min() >= 0 and img.max() <= 1
    assert img.std() > 0.05
    vae2 = comfy.nodes.VAELoader().load_vae(tiny_models.vae.name)[0]
    assert torch.equal(comfy.nodes.VAEDecode().decode(vae2, lat)[0], img)


def test_clip_checkpoint_encodes_text(comfy, tiny_clip_checkpoint, stock_ksampler):
    """The all-stock route: CheckpointLoaderSimple (random fp8 CLIP-L) -> CLIPTextEncode -> KSampler."""
    model, clip, _vae = comfy.nodes.CheckpointLoaderSimple().load_checkpoint(tiny_clip_checkpoint)[:3]
    assert clip is not None
    pos = comfy.nodes.CLIPTextEncode().encode(clip, "a photo of a cat")[0]
    neg = comfy.nodes.CLIPTextEncode().encode(clip, "")[0]
    assert pos[0][0].shape == (1, 77, 768) and pos[0][1]["pooled_output"].shape == (1, 768)
    assert torch.isfinite(pos[0][0]).all() and pos[0][0].std() > 0.1
    assert not torch.equal(pos[0][0], neg[0][0])
    lat = stock_ksampler(model, pos, neg, seed=42)["samples"]
    assert torch.isfinite(lat).all() and lat.std() > 1.0


def test_load_models_gpu_recorder_sees_the_sampled_model(model_a, record_load_models_gpu, stock_ksampler):
    stock_ksampler(model_a, seed=1)
    calls = record_load_models_gpu.calls_with(model_a)
    assert len(calls) == 1
    assert calls[0].models[0] is model_a
    assert "memory_required" in calls[0].kwargs


def test_generator_is_deterministic(tiny_models, tmp_path):
    again = generator.make_models(tmp_path, variants=("b",))
    assert again.unet["b"].read_bytes() == tiny_models.unet["b"].read_bytes()
    assert again.vae.read_bytes() == tiny_models.vae.read_bytes()
    assert tiny_models.lora["a"].stat().st_size > 0 and again.lora == {}
