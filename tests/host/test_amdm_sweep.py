"""Multi-Model Sweep in the real host: grid, settings, cost estimate, cancel, validation."""
import json

import pytest
import torch


@pytest.fixture(scope="module")
def vae(comfy, tiny_models):
    return comfy.nodes.VAELoader().load_vae(tiny_models.vae.name)[0]


def run_sweep(amdm, model, pos, neg, members, latent, vae, **kw):
    args = dict(seed=3, steps=6, cfg=2.0, sampler_name="euler", scheduler="normal", denoise=1.0, base_weight=0.5,
                parameter="window_end", values="1, 3", parameter_2="none", values_2="", aggregation=None,
                deviation=None)
    args.update(kw)
    with torch.inference_mode():
        return amdm.nodes.node_sweep.MultiModelSweep.execute(model, pos, neg, members, latent, vae, **args)


def test_sweep_grid_matches_individual_runs(amdm, model_a, model_b, make_cond, empty_latent, vae):
    pos, neg = make_cond(1), make_cond(0.0)
    chain = amdm.chain(model_b, make_cond(2), neg, weight=0.866)
    agg = amdm.aggregation(window_unit="steps", window_start=1, window_end=1)
    out = run_sweep(amdm, model_a, pos, neg, chain, empty_latent(), vae, aggregation=agg, parameter="window_end",
                    values="1, 3", parameter_2="mode", values_2="spherical, slerp")
    grid, settings, latents = out.args
    report = json.loads(settings)
    assert [r["label"] for r in report] == ["window_end=1, mode=spherical", "window_end=3, mode=spherical",
                                            "window_end=1, mode=slerp", "window_end=3, mode=slerp"]
    assert [r["planned_evaluations"] for r in report] == [6 + 2, 6 + 4, 6 + 2, 6 + 4]
    assert [r["summary"]["total_evaluations"] for r in report] == [8, 10, 8, 10]
    assert latents["samples"].shape == (4, 4, 8, 8)
    # the third tile equals a plain Multi-Model Sampler run with that configuration
    single, *_ = amdm.sample(model_a, pos, neg, chain, empty_latent(), seed=3, steps=6, base_weight=0.5,
                             aggregation=amdm.aggregation(mode="slerp", window_unit="steps", window_start=1,
                                                          window_end=1))
    assert torch.equal(latents["samples"][2:3], single["samples"])
    # a 2x2 grid of 64x64 tiles with caption strips, labels drawn (non-white pixels in the strips)
    assert grid.shape == (1, 2 * (64 + 14), 2 * 64, 3)
    assert float(grid[0, :14].min()) < 0.5 and "images" in out.ui


def test_sweep_validates_every_configuration_before_running(amdm, model_a, model_b, make_cond, empty_latent, vae,
                                                            record_load_models_gpu):
    pos, neg = make_cond(1), make_cond(0.0)
    chain = amdm.chain(model_b, make_cond(2), neg, weight=0.866)
    with pytest.raises(ValueError, match="configuration 'base_weight=0'.*every helper weight are 0|'values': 'x' is"):
        run_sweep(amdm, model_a, pos, neg, chain, empty_latent(), vae, parameter="base_weight", values="0.5, x")
    with pytest.raises(ValueError, match="window_start.*after 'window_end'"):
        run_sweep(amdm, model_a, pos, neg, chain, empty_latent(), vae, parameter="window_start", values="0.1, 0.9")
    with pytest.raises(ValueError, match="same as 'parameter'"):
        run_sweep(amdm, model_a, pos, neg, chain, empty_latent(), vae, parameter_2="window_end", values_2="1")
    assert record_load_models_gpu.calls == []


def test_sweep_honours_cancel(amdm, comfy, model_a, model_b, make_cond, empty_latent, vae):
    pos, neg = make_cond(1), make_cond(0.0)
    helper = model_b.clone()
    calls = []

    def cancel_once(f, a):
        calls.append(1)
        if len(calls) == 2:
            comfy.model_management.interrupt_current_processing(True)
        return f(a["input"], a["timestep"], **a["c"])
    helper.set_model_unet_function_wrapper(cancel_once)
    chain = amdm.chain(helper, make_cond(2), neg, weight=0.866)
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        run_sweep(amdm, model_a, pos, neg, chain, empty_latent(), vae, parameter="deviation_step", values="0, 0.2, 0.4",
                  aggregation=amdm.aggregation(window_unit="steps", window_start=1, window_end=3))
    assert len(calls) == 2
