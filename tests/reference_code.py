"""An independent re-implementation of the AMDM reference code's arithmetic (Hammour-steak/AMDM,
interactmigc.py: DDIM eta 0 per model in VP units, mixed = sum w x_next, then for EVERY model
x = mixed - p (mixed - mu) / ||mixed - mu|| with the code's one-step-lagged mu). Written from the
specification, sharing no code with amdm_core, so tests can compare the two."""
import math


def reference_code_ddim(eps_fns, xT_vp, timesteps, alphas_cumprod, weights, ps, start, end):
    """eps_fns[k](x_vp, t) -> guided eps; timesteps descending (e.g. 901, 801, ...); returns model 0's
    final VP latent. The last step goes to alpha_bar 1 (sigma 0), as ComfyUI's schedules end."""
    ac = alphas_cumprod
    delta = timesteps[0] - timesteps[1]
    xs = [x.double() for x in xT_vp]
    eps_prev = [None] * len(xs)
    for i, t in enumerate(timesteps):
        t_prev = t - delta
        ab_t = float(ac[t])
        ab_prev = float(ac[t_prev]) if t_prev >= 0 else 1.0
        eps = [f(x, t).double() for f, x in zip(eps_fns, xs)]
        nxt = []
        for x, e in zip(xs, eps):
            x0 = (x - math.sqrt(1 - ab_t) * e) / math.sqrt(ab_t)
            nxt.append(math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev) * e)
        if i > 0 and start <= i <= end:
            mixed = sum(w * x for w, x in zip(weights, nxt))
            tc = t + delta                                        # the code's "t + 1"
            a = float(ac[tc] / ac[tc - 1])
            mus = [x / math.sqrt(a) - (1 - a) / (math.sqrt(1 - float(ac[tc])) * math.sqrt(a)) * ep
                   for x, ep in zip(xs, eps_prev)]
            xs = [mixed - p * (mixed - mu) / (mixed - mu).flatten(1).norm(dim=1).view(-1, 1, 1, 1)
                  for p, mu in zip(ps, mus)]
        else:
            xs = nxt
        eps_prev = eps
    return xs[0]
