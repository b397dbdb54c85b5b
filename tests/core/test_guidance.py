"""Model guidance (autoguidance) at one shared state: formulas, parity, reductions, costs, refusals."""
import pytest
import torch

from amdm_core import (GUIDANCE_FORMS, autoguidance, autoguidance_cfg, guidance_evaluations, guidance_needs,
                       guide)
from amdm_core.analytic import gaussian_denoiser

SHAPE = (2, 4, 8, 8)


@pytest.fixture
def preds(gen):
    return {k: torch.randn(SHAPE, generator=gen) for k in ("sc", "su", "wc")}


def test_two_evaluation_form_is_the_papers_formula(preds):
    sc, wc = preds["sc"], preds["wc"]
    for w in (0.0, 0.5, 2.0, 3.5):
        assert torch.allclose(autoguidance(sc, wc, w), wc + w * (sc - wc), atol=1e-6)
    assert torch.equal(autoguidance(sc, wc, 0.0), wc)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_w_one_is_bitwise_the_strong_member(preds, dtype):
    sc, su, wc = (preds[k].to(dtype) for k in ("sc", "su", "wc"))
    assert torch.equal(autoguidance(sc, wc, 1.0), sc)
    assert torch.equal(autoguidance(sc, None, 1), sc)                 # the weak one is not needed
    for cfg in (0.0, 4.5, 7.0):
        host_cfg = su + (sc - su) * cfg                               # the host's cfg arithmetic
        assert torch.equal(autoguidance_cfg(sc, su, wc, 1.0, cfg), host_cfg)
        assert torch.equal(autoguidance_cfg(sc, su, None, 1.0, cfg), host_cfg)


def test_three_evaluation_form_and_its_reductions(preds):
    sc, su, wc = preds["sc"], preds["su"], preds["wc"]
    w, cfg = 2.5, 6.0
    out = autoguidance_cfg(sc, su, wc, w, cfg)
    assert torch.allclose(out, su + cfg * (sc - su) + (w - 1) * (sc - wc), atol=1e-5)
    # the score-space form: sharpen the strong conditional by both ratios
    assert torch.allclose(out, sc + (cfg - 1) * (sc - su) + (w - 1) * (sc - wc), atol=1e-5)
    # cfg == 1 is exactly the two-evaluation form, and needs no unconditional prediction
    assert torch.equal(autoguidance_cfg(sc, None, wc, w, 1.0), autoguidance(sc, wc, w))
    assert torch.equal(guide("autoguidance_cfg", strong_cond=sc, weak_cond=wc, w=w, cfg=1.0),
                       guide("autoguidance", strong_cond=sc, weak_cond=wc, w=w))


def test_same_combination_on_eps_as_on_x0():
    """Affine with coefficients summing to 1: combining eps = (x - D) / sigma gives the eps of the
    combined D, so the node layer may combine whichever prediction the host hands it."""
    g = torch.Generator().manual_seed(3)
    x, sigma = torch.randn(SHAPE, generator=g) * 3, 3.0
    strong, weak = (gaussian_denoiser(torch.randn(SHAPE, generator=g), s) for s in (0.5, 0.8))
    sc, wc = strong(x, torch.full([2], sigma)), weak(x, torch.full([2], sigma))
    su = torch.randn(SHAPE, generator=g)
    d = autoguidance_cfg(sc, su, wc, 2.0, 5.0)
    eps = autoguidance_cfg((x - sc) / sigma, (x - su) / sigma, (x - wc) / sigma, 2.0, 5.0)
    assert torch.allclose(eps, (x - d) / sigma, atol=1e-5)


def test_evaluation_counts():
    assert GUIDANCE_FORMS == ("autoguidance", "autoguidance_cfg")
    assert guidance_evaluations("autoguidance") == 2
    assert guidance_evaluations("autoguidance_cfg") == 3
    assert guidance_needs("autoguidance_cfg") == ("strong_cond", "strong_uncond", "weak_cond")
    assert guidance_needs("autoguidance", w=2.0) == ("strong_cond", "weak_cond")
    assert guidance_needs("autoguidance", w=1.0) == ("strong_cond",)
    assert guidance_evaluations("autoguidance_cfg", w=2.0, cfg=1.0) == 2
    assert guidance_evaluations("autoguidance_cfg", w=1.0, cfg=7.0) == 2
    assert guidance_evaluations("autoguidance_cfg", w=1.0, cfg=1.0) == 1


def test_bad_inputs_name_the_input(preds):
    sc, su, wc = preds["sc"], preds["su"], preds["wc"]
    with pytest.raises(ValueError, match="'w'"):
        autoguidance(sc, wc, -1.0)
    with pytest.raises(ValueError, match="'w'"):
        autoguidance(sc, wc, float("nan"))
    with pytest.raises(ValueError, match="'cfg'"):
        autoguidance_cfg(sc, su, wc, 2.0, float("inf"))
    with pytest.raises(ValueError, match="'weak'"):
        autoguidance(sc, None, 2.0)
    with pytest.raises(ValueError, match="'weak_cond' has shape"):
        autoguidance_cfg(sc, su, wc[:1], 2.0, 5.0)
    with pytest.raises(ValueError, match="'strong_uncond'"):
        autoguidance_cfg(sc, None, wc, 2.0, 5.0)
    with pytest.raises(ValueError, match="'form'"):
        guide("cfg", strong_cond=sc, w=2.0)
    with pytest.raises(ValueError, match="'form'"):
        guidance_evaluations("superdiff")
