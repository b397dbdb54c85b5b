"""Judges: small classifiers that read digit, position and colour from a 64x64 picture.

Trained on the held-out "judge_train" digits (never seen by the VAE or the diffusion models), drawn
in every position and colour and passed once through the trained VAE (encode + decode, so they know
its blur); accuracy measured on "judge_test". Saved as plain numbers (demo_set/judges.json) and
applied with numpy only, so the main command needs no scikit-learn.

Features (from the picture in [0, 1]): ink = max over channels of (1 - pixel);
  position: the ink map average-pooled to 8x8 (64 numbers)       -> logistic regression, 5 classes
  colour:   the ink-weighted mean RGB and its chroma (6 numbers)  -> logistic regression, 4 classes
  digit:    a 32x32 window around the ink's centre of mass, pooled to 16x16 -> MLP (64 hidden), 10 classes
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import data

FILE = "judges.json"
ASPECTS = ("digit", "position", "colour")
NAMES = {"digit": [str(d) for d in range(10)], "position": list(data.POSITIONS), "colour": list(data.COLOURS)}


def as_float(img) -> np.ndarray:
    """PIL image / uint8 array [H, W, 3] / float [3, H, W] -> float [H, W, 3] in [0, 1], 64x64."""
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[2] != 3:
        a = a.transpose(1, 2, 0)
    a = a[..., :3].astype(np.float32)
    if a.max() > 1.5:
        a = a / 255.0
    if a.shape[:2] != (data.SIZE, data.SIZE):
        from PIL import Image
        a = np.asarray(Image.fromarray((a * 255).astype(np.uint8)).resize((data.SIZE, data.SIZE), Image.BILINEAR),
                       np.float32) / 255.0
    return a


def ink_map(a: np.ndarray) -> np.ndarray:
    return np.clip(1.0 - a.min(axis=2), 0.0, 1.0)


def features(img) -> dict:
    a = as_float(img)
    ink = ink_map(a)
    pos = ink.reshape(8, 8, 8, 8).mean(axis=(1, 3)).ravel()
    pos = pos / (pos.sum() + 1e-6)
    w = ink ** 2
    rgb = (a * w[..., None]).sum(axis=(0, 1)) / (w.sum() + 1e-6)
    col = np.concatenate([rgb, rgb - rgb.mean()])
    m = ink.sum() + 1e-6
    r, c = np.mgrid[0:data.SIZE, 0:data.SIZE]
    cr, cc = int(round((ink * r).sum() / m)), int(round((ink * c).sum() / m))
    pad = np.pad(ink, 16)
    win = pad[cr:cr + 32, cc:cc + 32]
    dig = win.reshape(16, 2, 16, 2).mean(axis=(1, 3)).ravel()
    dig = dig / (dig.max() + 1e-6)
    return {"digit": dig.astype(np.float32), "position": pos.astype(np.float32), "colour": col.astype(np.float32)}


class Judges:
    def __init__(self, params: dict):
        self.p = {k: {n: np.asarray(v, np.float32) if isinstance(v, list) else v for n, v in d.items()}
                  for k, d in params["models"].items()}
        self.accuracy = params.get("accuracy", {})

    @classmethod
    def load(cls, path) -> "Judges":
        return cls(json.loads(Path(path).read_text()))

    def probs(self, aspect: str, f: np.ndarray) -> np.ndarray:
        p = self.p[aspect]
        x = (f - p["mu"]) / p["sd"]
        if "w1" in p:
            x = np.maximum(x @ p["w1"] + p["b1"], 0.0)
        z = x @ p["w"] + p["b"]
        z = np.exp(z - z.max())
        return z / z.sum()

    def read(self, img) -> dict:
        """{aspect: {"value": name, "index": i, "p": probability}}."""
        f = features(img)
        out = {}
        for a in ASPECTS:
            pr = self.probs(a, f[a])
            i = int(pr.argmax())
            out[a] = {"value": NAMES[a][i], "index": i, "p": round(float(pr[i]), 3)}
        return out


def _export_logistic(clf, mu, sd):
    return {"mu": mu.tolist(), "sd": sd.tolist(), "w": clf.coef_.T.tolist(), "b": clf.intercept_.tolist()}


def _export_mlp(clf, mu, sd):
    return {"mu": mu.tolist(), "sd": sd.tolist(), "w1": clf.coefs_[0].tolist(), "b1": clf.intercepts_[0].tolist(),
            "w": clf.coefs_[1].tolist(), "b": clf.intercepts_[1].tolist()}


def judge_pictures(split: str, vae_roundtrip, seed: int, reps: int):
    """(pictures [N, 3, 64, 64], labels [N, 3]) of a split: each digit in `reps` random position/colour
    pairs, passed through vae_roundtrip (a function on float [B, 3, 64, 64])."""
    d = data.Digits(split)
    rng = np.random.RandomState(seed)
    idx = np.repeat(np.arange(len(d)), reps)
    pos = rng.randint(0, len(data.POSITIONS), len(idx))
    col = rng.randint(0, len(data.COLOURS), len(idx))
    pics = data.render_batch(d.ink[idx], pos, col)
    if vae_roundtrip is not None:
        pics = vae_roundtrip(pics)
    return pics, np.stack([d.label[idx], pos, col], 1)


def fit(train_pics, train_labels, test_pics, test_labels, seed: int) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    def feats(pics):
        fs = [features(p) for p in pics]
        return {a: np.stack([f[a] for f in fs]) for a in ASPECTS}

    ftr, fte = feats(train_pics), feats(test_pics)
    models, acc = {}, {}
    for k, a in enumerate(ASPECTS):
        x = ftr[a]
        mu, sd = x.mean(0), x.std(0) + 1e-3
        if a == "digit":
            clf = MLPClassifier(hidden_layer_sizes=(64,), alpha=1e-3, max_iter=400, random_state=seed)
            clf.fit((x - mu) / sd, train_labels[:, k])
            models[a] = _export_mlp(clf, mu, sd)
        else:
            clf = LogisticRegression(C=1.0, max_iter=2000)
            clf.fit((x - mu) / sd, train_labels[:, k])
            models[a] = _export_logistic(clf, mu, sd)
    judges = Judges({"models": models})
    for k, a in enumerate(ASPECTS):
        pred = np.array([judges.probs(a, f).argmax() for f in fte[a]])
        acc[a] = round(float((pred == test_labels[:, k]).mean()), 4)
    return {"models": models, "accuracy": acc, "train_pictures": len(train_pics), "test_pictures": len(test_pics)}
