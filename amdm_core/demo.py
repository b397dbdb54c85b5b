"""Core demo: AMDM with two analytic Gaussian members; prints the trace. python -m amdm_core.demo"""
from __future__ import annotations

import argparse

import torch

from .analytic import gaussian_denoiser
from . import (FAITHFUL, DiscreteSchedule, EulerStepper, amdm_sample, spherical_weights, window_from_steps)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--window", type=int, nargs=2, default=(1, 3), metavar=("START", "END"))
    ap.add_argument("--omega", type=float, default=0.5, help="weight of the specified member (paper's omega)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    shape = (1, 4, 16, 16)
    base_mean, helper_mean = torch.full(shape, -1.0), torch.full(shape, 1.0)
    members = [gaussian_denoiser(base_mean, 0.5), gaussian_denoiser(helper_mean, 0.5)]
    sigmas = DiscreteSchedule.scaled_linear().ddim_uniform_sigmas(a.steps)
    g = torch.Generator().manual_seed(a.seed)
    states = [torch.randn(shape, generator=g) * sigmas[0] for _ in members]
    weights = spherical_weights([a.omega, (1 - a.omega ** 2) ** 0.5])
    window = window_from_steps(*a.window, a.steps)
    out, trace = amdm_sample(members, sigmas, states, weights=weights, window=window, stepper=EulerStepper(),
                             deviation=FAITHFUL.deviation)
    alone, _ = amdm_sample(members[:1], sigmas, states[:1], weights=[1.0], window=window, stepper=EulerStepper())
    print(f"steps {a.steps}, window steps {trace.window.start}..{trace.window.end}, weights {trace.weights}")
    print(f"aggregated at steps {trace.aggregated_steps} (sigmas {[round(s, 3) for s in trace.aggregated_sigmas]})")
    print(f"evaluations per member {trace.evaluations} (total {trace.total_evaluations} = "
          f"N + (K-1)(end+1) = {a.steps} + {trace.window.helper_steps})")
    print(f"norm ratio ||aggregate||/||base|| per aggregated step {[round(r, 3) for r in trace.norm_ratio]}")
    print(f"final mean: base alone {alone.mean():+.3f}, AMDM {out.mean():+.3f} "
          f"(base data mean -1, helper data mean +1)")


if __name__ == "__main__":
    main()
