"""AMDM through the real host: evaluation counts, loading, every sampler, policies, LoRA clones."""
import math

import pytest
import torch



@pytest.mark.parametrize("k, steps, end", [(2, 8, 3), (3, 10, 2)])
def test_evaluations_and_one_load_call(amdm, load_unet, make_cond, empty_latent, record_load_models_gpu, k, steps, end):
    base, base_calls = amdm.count_calls(load_unet("a"))
    helpers = [amdm.count_calls(load_unet(v)) for v in ("b", "c")[:k - 1]]
    chain = None
    for i, (m, _) in enumerate(helpers):
        chain = amdm.chain(m, make_cond(10 + i), make_cond(0.0), cfg=3.0, weight=0.8, previous=chain)
    agg = amdm.aggregation(window_unit="steps", window_start=1, window_end=end)
    out, text, _ = amdm.sample(base, make_cond(1), make_cond(0.0), chain, empty_latent(), steps=steps,
                        base_weight=0.5, aggregation=agg)
    assert len(base_calls) == steps
    assert [len(c) for _, c in helpers] == [end + 1] * (k - 1)
    assert f"total {steps + (k - 1) * (end + 1)} model evaluations" in text
    assert f"aggregated steps 1-{end} of {steps}" in text
    sampling_loads = [c for c in record_load_models_gpu.calls if any(m.is_clone(base) for m in c.models)]
    assert len(sampling_loads) == 1
    assert all(any(x.is_clone(m) for x in sampling_loads[0].models) for m, _ in helpers)
    assert torch.isfinite(out["samples"]).all()


def test_aggregation_changes_the_result_and_is_deterministic(amdm, model_a, model_b, make_cond, empty_latent,
                                                             stock_ksampler):
    pos, neg = make_cond(1), make_cond(0.0)
    chain = amdm.chain(model_b, make_cond(2), neg, cfg=2.0, weight=0.866)
    agg = amdm.aggregation(window_unit="steps", window_start=1, window_end=3)
    a1, *_ = amdm.sample(model_a, pos, neg, chain, empty_latent(), steps=8, base_weight=0.5, aggregation=agg)
    a2, *_ = amdm.sample(model_a, pos, neg, chain, empty_latent(), steps=8, base_weight=0.5, aggregation=agg)
    alone = stock_ksampler(model_a, pos, neg, empty_latent(), steps=8)
    assert torch.equal(a1["samples"], a2["samples"])
    assert not torch.allclose(a1["samples"], alone["samples"], atol=1e-3)
