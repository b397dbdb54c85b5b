"""The pictures: scikit-learn's 8x8 digits drawn at 64x64 in colour on a white background.

One digit (sklearn.datasets.load_digits, 1797 images) is upscaled 4x (bilinear) to 32x32 and drawn
in one of four colours at one of five places:

  aspect    values
  digit     0..9
  position  centre, top left, top right, bottom left, bottom right (a 32x32 cell: the centre
            cell is offset by 16 px, the corners are the four quadrants)
  colour    black, red, green, blue

pixel = white * (1 - ink) + colour * ink, in [0, 1]. The 8x VAE gives an 8x8x4 latent, so a corner
digit is one 4x4 block of latent cells.

Splits by sklearn index (deterministic): index % 10 in 0..5 -> "train" (diffusion models and VAE),
6..8 -> "judge_train" (the judges), 9 -> "judge_test" (the judges' accuracy).

Prompts: "a red digit 3 at the top left"; any of the three phrases may be left out
("a digit 3", "a red digit at the centre"); "" is the empty (negative / unconditional) prompt.
"""
from __future__ import annotations

import numpy as np

SIZE = 64
CELL = 32
POSITIONS = ("centre", "top left", "top right", "bottom left", "bottom right")
OFFSETS = ((16, 16), (0, 0), (0, 32), (32, 0), (32, 32))       # (row, col) of the 32x32 cell
COLOURS = ("black", "red", "green", "blue")
RGB = ((0.08, 0.08, 0.08), (0.86, 0.10, 0.10), (0.10, 0.62, 0.16), (0.10, 0.24, 0.86))
BACKGROUND = (1.0, 1.0, 1.0)
SPLITS = {"train": (0, 1, 2, 3, 4, 5), "judge_train": (6, 7, 8), "judge_test": (9,)}
SOURCE = ("scikit-learn sklearn.datasets.load_digits() (UCI ML hand-written digits, 1797 8x8 images, "
          "shipped inside the scikit-learn package); split by index % 10")


def load_digits():
    """(ink [N, 8, 8] in [0, 1], label [N]) in sklearn's order."""
    from sklearn.datasets import load_digits as sk_load
    d = sk_load()
    return d.images.astype(np.float32) / 16.0, d.target.astype(np.int64)


def split_indices(n: int, split: str) -> np.ndarray:
    keep = SPLITS[split]
    return np.array([i for i in range(n) if i % 10 in keep], dtype=np.int64)


def upscale(ink8: np.ndarray) -> np.ndarray:
    """[N, 8, 8] -> [N, 32, 32] bilinear (torch, align_corners=False), slightly sharpened."""
    import torch
    t = torch.from_numpy(np.ascontiguousarray(ink8, dtype=np.float32))[:, None]
    up = torch.nn.functional.interpolate(t, size=(CELL, CELL), mode="bilinear", align_corners=False)[:, 0]
    return np.clip((up.numpy() - 0.1) * 1.4, 0.0, 1.0).astype(np.float32)


def render(ink32: np.ndarray, position: int, colour: int) -> np.ndarray:
    """One picture [3, 64, 64] in [0, 1] from a 32x32 ink image."""
    img = np.empty((3, SIZE, SIZE), np.float32)
    for c in range(3):
        img[c] = BACKGROUND[c]
    r, col = OFFSETS[position]
    for c in range(3):
        cell = img[c, r:r + CELL, col:col + CELL]
        img[c, r:r + CELL, col:col + CELL] = cell * (1.0 - ink32) + RGB[colour][c] * ink32
    return img


def render_batch(ink32: np.ndarray, positions, colours) -> np.ndarray:
    return np.stack([render(ink32[i], int(p), int(c)) for i, (p, c) in enumerate(zip(positions, colours))])


def prompt(digit=None, position=None, colour=None) -> str:
    """The caption; None leaves a phrase out; all None -> ""."""
    if digit is None and position is None and colour is None:
        return ""
    words = ["a"]
    if colour is not None:
        words.append(COLOURS[colour])
    words.append("digit" if digit is None else f"digit {digit}")
    if position is not None:
        words.append("at the " + POSITIONS[position])
    return " ".join(words)


def vocabulary() -> list[str]:
    """Every caption the models are trained on: each phrase present or absent (330 prompts)."""
    out = []
    for d in [None] + list(range(10)):
        for p in [None] + list(range(len(POSITIONS))):
            for c in [None] + list(range(len(COLOURS))):
                out.append(prompt(d, p, c))
    return out


class Digits:
    """The upscaled ink images and labels of one split."""

    def __init__(self, split: str):
        ink8, labels = load_digits()
        idx = split_indices(len(ink8), split)
        self.split = split
        self.index = idx
        self.ink = upscale(ink8[idx])
        self.label = labels[idx]

    def __len__(self):
        return len(self.label)
