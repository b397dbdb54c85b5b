"""Phases 1 and 4 of the speed benchmark: the Multi-Model Sampler against stock KSampler runs doing the
same UNet evaluations, variants interleaved in rotating order, reported as per-repeat ratios."""
from __future__ import annotations

import gc
import json
import logging
import statistics
import time

from host_setup import Host, Member, latent_channels

log = logging.getLogger("amdm.bench")

CFG = 2.0
SAMPLER, SCHEDULER = "euler", "normal"      # one evaluation per step in stock and in the MMS
SEED = 42


class Bench:
    """The timed variants on one set of members and one empty latent."""

    def __init__(self, host: Host, members: list[Member], latent_side: int, steps: int):
        self.host, self.members, self.side, self.steps = host, members, latent_side, steps
        self.latent = {"samples": host.torch.zeros(1, latent_channels(members[0]), latent_side, latent_side)}

    def _reset_counts(self):
        for m in self.members:
            m.calls = 0
        self.members[0].clock.seconds = 0.0

    def _calls(self):
        return sum(m.calls for m in self.members)

    def mms(self, k: int, steps: int, window_end: int, helper_weight: float = 1.0):
        """The Multi-Model Sampler node's execute, as ComfyUI's executor calls it (inference mode)."""
        h, torch = self.host, self.host.torch
        base, helpers = self.members[0], self.members[1:k]
        chain = None
        for m in helpers:
            chain = h.node_member.MultiModelMember.execute(model=m.patcher, positive=m.positive, negative=m.negative,
                                                           cfg=CFG, weight=helper_weight, previous=chain).args[0]
        agg = h.settings.AggregationSettings(window_unit="steps", window_start=0, window_end=float(window_end))

        def run():
            with torch.inference_mode():
                return h.node_sampler.MultiModelSampler.execute(
                    model=base.patcher, positive=base.positive, negative=base.negative, members=chain,
                    latent_image=self.latent, seed=SEED, steps=steps, cfg=CFG, sampler_name=SAMPLER,
                    scheduler=SCHEDULER, denoise=1.0, base_weight=1.0, aggregation=agg, deviation=None)
        return self._timed(run, lambda out: (out.args[0]["samples"], json.loads(out.ui["amdm_summary"][0])))

    def stock(self, runs: list[tuple[int, int]]):
        """Stock KSampler node runs, one per (member index, steps)."""
        h, torch = self.host, self.host.torch

        def run():
            outs = []
            with torch.inference_mode():
                for idx, steps in runs:
                    m = self.members[idx]
                    outs.append(h.nodes.KSampler().sample(m.patcher, SEED, steps, CFG, SAMPLER, SCHEDULER,
                                                          m.positive, m.negative, self.latent, denoise=1.0)[0])
            return outs
        return self._timed(run, lambda outs: (outs[0]["samples"], None))

    def _timed(self, run, unpack):
        gc.collect()
        self._reset_counts()
        self.host.sync()
        t0, c0 = time.perf_counter(), time.process_time()
        out = run()
        self.host.sync()
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        samples, summary = unpack(out)
        finite = bool(self.host.torch.isfinite(samples).all())
        clock = self.members[0].clock
        return {"seconds": seconds, "cpu_seconds": cpu_seconds, "unet_calls": self._calls(), "finite": finite,
                "summary": summary,
                "outside_unet_cpu_seconds": cpu_seconds - clock.seconds if clock.enabled else None}

    def variants(self, k: int, steps: int, window_end: int):
        """name -> callable; every variant does N + (K-1)(e+1) evaluations."""
        helper_steps = window_end + 1
        total = steps + (k - 1) * helper_steps
        return {
            "mms": lambda: self.mms(k, steps, window_end),
            "separate": lambda: self.stock([(0, steps)] + [(i, helper_steps) for i in range(1, k)]),
            "single": lambda: self.stock([(0, total)]),
        }


def ratio_stats(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    q = statistics.quantiles(vals, n=4) if len(vals) >= 2 else [vals[0]] * 3
    return {"median": statistics.median(vals), "q1": q[0], "q3": q[2], "min": min(vals), "max": max(vals),
            "n": len(vals), "all": vals}


def measure_config(bench: Bench, group: str, k: int, steps: int, window_end: int, repeats: int,
                   free: bool = False, deadline: float | None = None) -> dict:
    """One configuration: variants interleaved in rotating order, `repeats` times (fewer, but at
    least one, once time.perf_counter() passes `deadline`)."""
    if free:
        variants = {"mms": lambda: bench.mms(k, steps, window_end, helper_weight=0.0),
                    "single": lambda: bench.stock([(0, steps)])}
        expected = steps
    else:
        variants = bench.variants(k, steps, window_end)
        expected = steps + (k - 1) * (window_end + 1)
    runs = run_interleaved(variants, repeats, deadline)
    primary = bench.host.clock_name
    entry = {
        "group": group, "K": k, "steps": steps, "window_end": window_end,
        "helper_weight": 0.0 if free else 1.0,
        "repeats": runs.repeats, "truncated_by_time_budget": runs.truncated,
        "expected_evaluations": expected,
        **summary_counts(runs.summary),
        "unet_calls": {n: sorted(runs.calls[n]) for n in runs.names},
        "finite": runs.finite,
        "clock": primary,
        "seconds": runs.times["wall"],
        "cpu_seconds": runs.times["cpu"],
        "median_seconds": {n: statistics.median(runs.times[primary][n]) for n in runs.names},
        "outside_unet_cpu_seconds": runs.outside if runs.outside["mms"][0] is not None else None,
        "order": "rotating: repeat r starts with variant r mod %d of %s" % (len(runs.names), runs.names),
    }
    entry.update(time_ratios(runs, primary))
    if entry["outside_unet_cpu_seconds"]:
        entry.update(outside_unet_per_evaluation(runs, expected))
    _log_config(entry, primary)
    return entry


class InterleavedRuns:
    """The raw measurements of one configuration, per variant name."""

    def __init__(self, names: list[str], repeats: int):
        self.names, self.repeats, self.truncated = names, repeats, False
        self.times = {"wall": {n: [] for n in names}, "cpu": {n: [] for n in names}}
        self.outside = {n: [] for n in names}
        self.calls = {n: set() for n in names}
        self.finite = {n: True for n in names}
        self.summary = None

    def add(self, name: str, res: dict):
        self.times["wall"][name].append(res["seconds"])
        self.times["cpu"][name].append(res["cpu_seconds"])
        self.outside[name].append(res["outside_unet_cpu_seconds"])
        self.calls[name].add(res["unet_calls"])
        self.finite[name] = self.finite[name] and res["finite"]
        if res["summary"] is not None:
            self.summary = res["summary"]


def run_interleaved(variants: dict, repeats: int, deadline: float | None) -> InterleavedRuns:
    """Every variant once per repeat, repeat r starting with variant r mod len(variants)."""
    names = list(variants)
    runs = InterleavedRuns(names, repeats)
    for r in range(repeats):
        if r > 0 and deadline is not None and time.perf_counter() > deadline:
            runs.repeats, runs.truncated = r, True
            break
        for n in names[r % len(names):] + names[:r % len(names)]:
            runs.add(n, variants[n]())
    return runs


def summary_counts(summary: dict | None) -> dict:
    """The evaluation counts the MMS node's summary reports (None for stock-only runs)."""
    return {"summary_total_evaluations": summary["total_evaluations"] if summary else None,
            "summary_window_steps": summary["window_steps"] if summary else None,
            "summary_member_evaluations": [m["evaluations"] for m in summary["members"]] if summary else None}


def time_ratios(runs: InterleavedRuns, primary: str) -> dict:
    """MMS / each stock variant per repeat, on both clocks; `ratio_vs_*` on the primary clock."""
    out = {}
    for clock, t in runs.times.items():
        for n in runs.names:
            if n != "mms":
                out[f"{clock}_ratio_vs_{n}"] = ratio_stats([t["mms"][r] / t[n][r] for r in range(runs.repeats)])
    for n in runs.names:
        if n != "mms":
            out[f"ratio_vs_{n}"] = out[f"{primary}_ratio_vs_{n}"]
    return out


def outside_unet_per_evaluation(runs: InterleavedRuns, expected: int) -> dict:
    """The host's + the pack's work outside the UNet, ms per evaluation, and what the MMS adds."""
    outside = runs.outside
    out = {"outside_unet_ms_per_eval": {n: statistics.median(outside[n]) / expected * 1e3 for n in runs.names}}
    for n in runs.names:
        if n != "mms":
            out[f"extra_outside_ms_per_eval_vs_{n}"] = ratio_stats(
                [(outside["mms"][r] - outside[n][r]) / expected * 1e3 for r in range(runs.repeats)])
    return out


def _log_config(entry: dict, primary: str):
    log.info("%-7s K=%d N=%d e=%d evals=%d summary=%s calls=%s  MMS/separate=%s MMS/single=%s (%s time; wall: "
             "%s, %s)", entry["group"], entry["K"], entry["steps"], entry["window_end"], entry["expected_evaluations"],
             entry["summary_total_evaluations"], entry["unet_calls"], _fmt(entry.get("ratio_vs_separate")),
             _fmt(entry.get("ratio_vs_single")), primary, _fmt(entry.get("wall_ratio_vs_separate")),
             _fmt(entry.get("wall_ratio_vs_single")))


def _fmt(stats):
    return "-" if not stats else f"{stats['median']:.3f}"
