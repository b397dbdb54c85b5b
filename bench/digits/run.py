"""Every mode on the digit demo set through a real ComfyUI server; judged per picture.

    python -m bench.digits.run [--quick | --full] [--batch B] [--steps N] [--out DIR] [--server URL]

One API prompt per target (scripts/amdm_main/digit_demo.build: stock UNETLoader / LoraLoaderModelOnly /
CLIPLoader / VAELoader / CLIPTextEncode / KSampler beside the pack's Multi-Model Sampler) runs every mode
on the same latent batch (EmptyLatentImage batch B, one seed per target), POSTed to /prompt. The judges
(devtools.digit_set.judges: trained on held-out digits, never seen by the models) read digit, position
and colour from each saved picture.

Target sets (base = the digit expert, helper = the position expert, as in the main command):
  conflict   digits the position expert never drew (2 3 4 5 6 9) in a corner: neither member alone
             knows both aspects; the question AMDM is for
  agree      digits 1 and 7 in a corner: the position expert knows both, the digit expert the digit
  home       "a digit d" (d = 0..9), the digit expert's own ground: what the base alone can do

Writes results.json, table.md and grid.png to --out (default bench/results/digits/full, or
bench/results/digits/quick with --quick; quick is what tests/bench/test_digits_quick.py runs).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

from bench.git_state import git_state
from bench.quality.stats import rate
from devtools.digit_set import data, install
from scripts.amdm_main import digit_demo

REPO_ROOT = Path(__file__).resolve().parents[2]
ALL_MODES = digit_demo.MODES + digit_demo.EXTRA_MODES
CORNERS = (1, 2, 3, 4)           # data.POSITIONS indices: top left, top right, bottom left, bottom right
CONFLICT_DIGITS = (2, 3, 4, 5, 6, 9)
AGREE_DIGITS = (1, 7)
PROFILES = {
    #         per-set target lists are cut to `targets` (spread over digits and corners), B pictures each
    "quick": {"targets": {"conflict": 2, "agree": 1, "home": 1}, "batch": 2, "steps": 10},
    "full": {"targets": {"conflict": 12, "agree": 4, "home": 10}, "batch": 8, "steps": 20},
}


def target_sets() -> dict:
    """{set: [(text, {aspect: value name})]}, in an order where any prefix spreads over digits and corners."""
    def named(d, p):
        t = {"digit": str(d)}
        if p is not None:
            t["position"] = data.POSITIONS[p]
        return data.prompt(d, p, None), t
    conflict = [named(CONFLICT_DIGITS[(i + i // 6) % 6], CORNERS[i % 4]) for i in range(24)]
    agree = [named(AGREE_DIGITS[i % 2], CORNERS[(i + i // 4) % 4]) for i in range(8)]
    home = [named(d, None) for d in (3, 0, 7, 5, 2, 9, 4, 1, 8, 6)]
    return {"conflict": conflict, "agree": agree, "home": home}


def picture_list(client, outputs: dict, save_id: str) -> list[bytes]:
    images = outputs.get(save_id, {}).get("images") or []
    return [client.view(im["filename"], im.get("subfolder", ""), im.get("type", "output")) for im in images]


def judge_batch(judges, pngs: list[bytes], target: dict) -> list[dict]:
    from PIL import Image
    out = []
    for png in pngs:
        r = judges.read(Image.open(io.BytesIO(png)).convert("RGB"))
        rec = {a: r[a]["value"] for a in r}
        rec["ok"] = {a: r[a]["value"] == v for a, v in target.items()}
        rec["joint"] = all(rec["ok"].values())
        rec["background"] = round(digit_demo.background_share(png), 4)
        rec["sha1"] = hashlib.sha1(png).hexdigest()[:12]      # which modes drew the same picture
        out.append(rec)
    return out


def run_targets(client, judges, sets: dict, prof: dict, modes, log) -> tuple[dict, dict, dict]:
    """(per set and mode: the judged pictures; per mode: evaluations per run; per set: a few pictures)."""
    judged = {s: {m: [] for m in modes} for s in sets}
    evals, keep = {}, {}
    for s, targets in sets.items():
        for i, (text, target) in enumerate(targets):
            seed = 1000 + 97 * i + {"conflict": 0, "agree": 10000, "home": 20000}[s]
            dp = digit_demo.build(text, f"bench_digits/{s}_{i}", seed=seed, steps=prof["steps"],
                                  batch_size=prof["batch"], modes=modes)
            t0 = time.monotonic()
            res = client.run(dp.prompt, timeout=1800)
            summaries = {m: json.loads(res.outputs[nid]["amdm_summary"][0])
                         for m, nid in dp.samplers.items() if res.outputs.get(nid, {}).get("amdm_summary")}
            for m, n in digit_demo.evaluations(dp, summaries).items():
                if evals.setdefault(m, n) != n:
                    raise RuntimeError(f"mode {m}: {n} evaluations on {text!r}, {evals[m]} before")
            for m in modes:
                pngs = picture_list(client, res.outputs, dp.saves[m])
                if len(pngs) != prof["batch"]:
                    raise RuntimeError(f"mode {m} on {text!r}: {len(pngs)} pictures, expected {prof['batch']}")
                judged[s][m] += judge_batch(judges, pngs, target)
                if i < 6:
                    keep.setdefault(s, {}).setdefault(m, []).append((text, pngs[0]))
            done = {m: sum(r["joint"] for r in judged[s][m][-prof["batch"]:]) for m in modes}
            log(f"  {s} {i + 1}/{len(targets)} \"{text}\" ({time.monotonic() - t0:.1f} s): joint per mode {done}")
    return judged, evals, keep


def summarise(judged: dict, evals: dict, modes) -> dict:
    out = {}
    for s, per_mode in judged.items():
        out[s] = {}
        for m in modes:
            recs = per_mode[m]
            n = len(recs)
            row = {"joint": rate(sum(r["joint"] for r in recs), n), "evaluations_per_run": evals[m],
                   "background_share_min": min(r["background"] for r in recs),
                   "background_share_mean": round(sum(r["background"] for r in recs) / n, 4)}
            for a in ("digit", "position"):
                has = [r for r in recs if a in r["ok"]]
                if has:
                    row[a] = rate(sum(r["ok"][a] for r in has), len(has))
            colours = {}
            for r in recs:
                colours[r["colour"]] = colours.get(r["colour"], 0) + 1
            row["colours"] = colours
            out[s][m] = row
    return out


SET_TITLES = {"conflict": "conflict: a digit the position expert never drew, in a corner (members pull apart)",
              "agree": "agree: digit 1 or 7 in a corner (the position expert knows both aspects)",
              "home": "home: \"a digit d\" (the digit expert's own ground; only the digit is judged)"}


def table(doc: dict) -> str:
    pct = (lambda r: f"{100 * r['rate']:.1f} [{100 * r['ci95'][0]:.0f}, {100 * r['ci95'][1]:.0f}]" if r else "")
    lines = ["# Every mode on the digit demo set, through the server", "",
             f"Command: `{doc['command']}`  ",
             f"Commit: `{doc['git']['commit']}`" + (" (uncommitted changes)" if doc["git"]["dirty"] else "") + "  ",
             f"Host: ComfyUI {doc['host']['comfyui']}, torch {doc['host']['torch']}, {doc['host']['device']}; "
             f"{doc['seconds']:.0f} s in all", "",
             f"Each target: one API prompt, every mode on the same latent batch of {doc['profile']['batch']} "
             f"(one seed per target), {doc['profile']['steps']} steps, {doc['settings']['sampler_name']}/"
             f"{doc['settings']['scheduler']}, cfg {doc['settings']['cfg']}. Base = digit expert, helper = position "
             f"expert. Judges: {doc['judges_accuracy']} accuracy on held-out digits. "
             "Evaluations: model calls per run as the nodes count them (a CFG step is one).", ""]
    for s, rows in doc["sets"].items():
        lines += [f"## {SET_TITLES[s]}", "", "| mode | n | joint % [95% CI] | digit % | position % | colours drawn "
                  "| evaluations/run | background share (min) |", "|---|---|---|---|---|---|---|---|"]
        for m, r in rows.items():
            cols = ", ".join(f"{k} {v}" for k, v in sorted(r["colours"].items(), key=lambda kv: -kv[1]))
            lines.append(f"| {digit_demo.TITLES[m]} | {r['joint']['n']} | {pct(r['joint'])} | "
                         f"{pct(r.get('digit'))} | {pct(r.get('position'))} | {cols} | {r['evaluations_per_run']} | "
                         f"{r['background_share_mean']:.2f} ({r['background_share_min']:.2f}) |")
        lines.append("")
    return "\n".join(lines) + "\n"


def grid(keep: dict, modes, path: Path):
    """Rows: modes; columns: the first picture of the first targets of each set."""
    from PIL import Image, ImageDraw, ImageFont
    try:
        font = ImageFont.load_default(size=12)
    except TypeError:
        font = ImageFont.load_default()
    cols = [(s, i) for s in keep for i in range(len(keep[s][modes[0]]))]
    cell, label_w, head = 96, 230, 34
    canvas = Image.new("RGB", (label_w + cell * len(cols), head + cell * len(modes)), "white")
    d = ImageDraw.Draw(canvas)
    for c, (s, i) in enumerate(cols):
        text = keep[s][modes[0]][i][0].replace("a digit ", "").replace("at the ", "")
        d.text((label_w + c * cell + 2, 2), s, fill=(90, 90, 90), font=font)
        d.text((label_w + c * cell + 2, 16), text, fill="black", font=font)
    for r, m in enumerate(modes):
        d.text((4, head + r * cell + cell // 2 - 6), digit_demo.TITLES[m], fill="black", font=font)
        for c, (s, i) in enumerate(cols):
            im = Image.open(io.BytesIO(keep[s][m][i][1])).convert("RGB").resize((cell - 4, cell - 4), Image.NEAREST)
            canvas.paste(im, (label_w + c * cell + 2, head + r * cell + 2))
    canvas.save(path)


def start_server(log, out: Path):
    from devtools.server import ComfyServer
    models = digit_demo.server_models(warn=log)
    server = ComfyServer(models=models, python=sys.executable, cpu=None, log_path=out / "comfyui.log")
    t0 = time.monotonic()
    client = server.start()
    log(f"ComfyUI ready at {client.base_url} in {time.monotonic() - t0:.1f} s ({'CPU' if server.cpu else 'GPU'})")
    return server, client


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="a few targets, 2 pictures each, 10 steps (the test's)")
    g.add_argument("--full", action="store_true", help="the published numbers (default)")
    ap.add_argument("--batch", type=int, help="pictures per target and mode")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--out", help="output folder")
    ap.add_argument("--sets", help="comma-separated target sets (default: all)")
    ap.add_argument("--modes", help=f"comma-separated modes (default: all of {', '.join(ALL_MODES)})")
    ap.add_argument("--targets", type=int, help="at most this many targets per set")
    ap.add_argument("--server", help="a running ComfyUI with the pack and the set installed (else one is started)")
    ns = ap.parse_args(argv)
    name = "quick" if ns.quick else "full"
    prof = dict(PROFILES[name])
    prof.update({k: v for k, v in (("batch", ns.batch), ("steps", ns.steps)) if v})
    out = Path(ns.out) if ns.out else REPO_ROOT / "bench" / "results" / "digits" / name
    out.mkdir(parents=True, exist_ok=True)

    def log(msg):
        sys.stderr.write(f"[bench.digits] {msg}\n")
        sys.stderr.flush()

    judges = digit_demo.load_judges()
    if judges is None:
        raise SystemExit("the judges (demo_set/judges.json) are missing: python -m devtools.digit_set.train --judges-only")
    modes = tuple(ns.modes.split(",")) if ns.modes else ALL_MODES
    bad = [m for m in modes if m not in ALL_MODES]
    if bad:
        ap.error(f"--modes: unknown {bad}; choose from {', '.join(ALL_MODES)}")
    wanted = ns.sets.split(",") if ns.sets else list(PROFILES[name]["targets"])
    sets = {s: ts[:min(prof["targets"][s], ns.targets or 10 ** 6)] for s, ts in target_sets().items() if s in wanted}
    t0 = time.monotonic()
    server = None
    if ns.server:
        from devtools.client import ComfyClient
        client = ComfyClient(ns.server)
    else:
        server, client = start_server(log, out)
    try:
        stats = client.get_json("/system_stats")
        judged, evals, keep = run_targets(client, judges, sets, prof, modes, log)
    finally:
        if server is not None:
            server.stop()
            server.cleanup()
    import torch
    doc = {
        "command": "python -m bench.digits.run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "git": git_state(REPO_ROOT), "profile": prof, "profile_name": name, "settings": digit_demo.DEFAULTS,
        "amdm_settings": digit_demo.AMDM, "handoff_at": digit_demo.HANDOFF_AT, "guidance": digit_demo.GUIDANCE,
        "superposition": digit_demo.SUPERPOSE, "modes": list(modes),
        "targets": {s: [t for t, _ in ts] for s, ts in sets.items()},
        "host": {"comfyui": stats.get("system", {}).get("comfyui_version", "?"), "torch": torch.__version__,
                 "python": platform.python_version(),
                 "device": "GPU" if any(d.get("type") == "cuda" for d in stats.get("devices", [])) else "CPU",
                 "cpus": os.cpu_count()},
        "judges_accuracy": install.provenance().get("stages", {}).get("judges", {}).get("accuracy"),
        "sets": summarise(judged, evals, modes), "pictures": judged,
        "seconds": round(time.monotonic() - t0, 1),
    }
    (out / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "table.md").write_text(table(doc))
    grid(keep, modes, out / "grid.png")
    log(f"wrote {out / 'results.json'}, table.md, grid.png in {doc['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
