"""Parity: with aggregation off the Multi-Model Sampler equals the stock KSampler bit for bit."""
import pytest
import torch


@pytest.mark.parametrize("sampler_name", ["euler", "euler_ancestral", "dpmpp_2m", "dpmpp_sde", "uni_pc"])
@pytest.mark.parametrize("scheduler", ["karras", "normal"])
@pytest.mark.parametrize("denoise, masked", [(1.0, False), (0.6, False), (1.0, True), (0.6, True)])
def test_helper_weight_zero_equals_stock_ksampler(amdm, model_a, model_b, make_cond, empty_latent, stock_ksampler,
                                                  sampler_name, scheduler, denoise, masked):
    pos, neg = make_cond(1), make_cond(0.0)
    latent = empty_latent(64, 64, 1) if denoise == 1 else amdm.random_latent()
    if masked:
        mask = torch.zeros(1, 1, 64, 64)
        mask[..., 16:48, 16:48] = 1.0
        latent = dict(latent, noise_mask=mask)
    members = amdm.chain(model_b, make_cond(2), neg, weight=0.0)
    kw = dict(seed=7, steps=6, cfg=3.0, sampler_name=sampler_name, scheduler=scheduler, denoise=denoise)
    expected = stock_ksampler(model_a, pos, neg, latent, **kw)["samples"]
    got, summary, _ = amdm.sample(model_a, pos, neg, members, latent, **kw)
    assert torch.equal(got["samples"], expected), float((got["samples"] - expected).abs().max())
    assert "no aggregation" in summary and "weight 0, not loaded or evaluated" in summary


@pytest.mark.parametrize("sampler_name", ["euler", "dpmpp_2m", "euler_ancestral"])
def test_empty_window_equals_stock_ksampler(amdm, model_a, model_b, make_cond, empty_latent, stock_ksampler,
                                            sampler_name):
    """A window that resolves to no step (percent window below the first step) runs the base alone."""
    pos, neg = make_cond(1), make_cond(0.0)
    members = amdm.chain(model_b, make_cond(2), neg, weight=1.0)
    agg = amdm.aggregation(window_unit="sigma", window_start=1e6, window_end=1e5)
    got, summary, _ = amdm.sample(model_a, pos, neg, members, empty_latent(), steps=5, sampler_name=sampler_name,
                                  aggregation=agg)
    expected = stock_ksampler(model_a, pos, neg, empty_latent(), steps=5, sampler_name=sampler_name)
    assert torch.equal(got["samples"], expected["samples"])
    assert "total 5 model evaluations" in summary
