"""Canvas dataset for the quality benchmark, built from scikit-learn's 8x8 digits.

Each canvas is 16x16, one channel, background -1. One 8x8 digit (sklearn.datasets.load_digits,
1797 images, ink 0..16) is placed in one of four quadrants, drawn in one of two stroke styles:

  aspect    values                              decided in sampling (measured by the benchmark's
                                                stage probe, percent of the noise range)
  position  0 TL, 1 TR, 2 BL, 3 BR (quadrant)   first: mostly by 0.2-0.3 (coarse layout)
  style     0 solid, 1 checker (every other     next: 0.3-0.5 (the texture also dims the
            pixel of the stroke dimmed to 20%)  stroke on average, a coarse cue)
  class     0..9 (the digit)                    last: around 0.5 (shape)

Value = -1 + 2 * ink * texture, so solid strokes reach +1 and dimmed checker pixels about -0.6.

Splits are by digit index (deterministic, no randomness):
  index % 10 in {0,2,4,6,8}  -> "diffusion"  (the diffusion models' training digits, 50 %)
  index % 10 in {1,3,5}      -> "clf_train"  (the aspect classifiers' training digits, 30 %)
  index % 10 in {7,9}        -> "clf_test"   (classifier accuracy and the quality proxy, 20 %)
Every split is rendered in all 4 positions x 2 styles, so the classifiers and the diffusion models
never share a digit.

The ecosystem's training distribution has one bias, as real models do ("a cat" is usually
centred): each class has a HOME quadrant, home(c) = c % 4, where it is drawn with probability
HOME_P = 0.6 (0.133 in each other quadrant); style is independent (1/2 each). So the class model
A alone puts digit c at home(c) about 60 % of the time, and the position model B alone, asked for
quadrant q, prefers the classes whose home is q. Targets "digit c at home(c)" are ones where the
members agree; "digit c elsewhere" are ones where they pull in different directions. The aspect
classifiers are trained on the unbiased renderings (every position and style equally).
"""
from __future__ import annotations

import numpy as np
import torch

SIZE = 16
DIGIT = 8
N_CLASS, N_POS, N_STYLE = 10, 4, 2
ASPECTS = ("class", "position", "style")
N_VALUES = {"class": N_CLASS, "position": N_POS, "style": N_STYLE}
POSITIONS = ((0, 0), (0, 8), (8, 0), (8, 8))          # (row, col) of the digit's top-left corner
POSITION_NAMES = ("top-left", "top-right", "bottom-left", "bottom-right")
STYLE_NAMES = ("solid", "checker")
CHECKER_DIM = 0.2
HOME_P = 0.6
SPLITS = {"diffusion": (0, 2, 4, 6, 8), "clf_train": (1, 3, 5), "clf_test": (7, 9)}
PROVENANCE = ("scikit-learn sklearn.datasets.load_digits() (UCI ML hand-written digits, 1797 8x8 images, "
              "shipped inside the scikit-learn package); split by index % 10")


def load_digit_images():
    from sklearn.datasets import load_digits
    d = load_digits()
    return d.images.astype(np.float32) / 16.0, d.target.astype(np.int64)


def split_indices(n: int, split: str) -> np.ndarray:
    keep = SPLITS[split]
    return np.array([i for i in range(n) if i % 10 in keep], dtype=np.int64)


def checker_mask() -> np.ndarray:
    r, c = np.mgrid[0:SIZE, 0:SIZE]
    return np.where((r + c) % 2 == 1, CHECKER_DIM, 1.0).astype(np.float32)


def render(ink: np.ndarray, position: int, style: int) -> np.ndarray:
    """One 16x16 canvas in [-1, 1] from an 8x8 ink image in [0, 1]."""
    canvas = np.zeros((SIZE, SIZE), np.float32)
    r, c = POSITIONS[position]
    canvas[r:r + DIGIT, c:c + DIGIT] = ink
    if style == 1:
        canvas = canvas * checker_mask()
    return canvas * 2.0 - 1.0


class CanvasSet:
    """All renderings of one split: x [M, 1, 16, 16] float32 in [-1, 1]; labels [M, 3] (class,
    position, style); digit [M] (sklearn index)."""

    def __init__(self, split: str):
        images, targets = load_digit_images()
        idx = split_indices(len(images), split)
        xs, labels, digit = [], [], []
        for i in idx:
            for p in range(N_POS):
                for s in range(N_STYLE):
                    xs.append(render(images[i], p, s))
                    labels.append((targets[i], p, s))
                    digit.append(i)
        self.split = split
        self.x = torch.from_numpy(np.stack(xs)[:, None])
        self.labels = torch.tensor(labels, dtype=torch.long)
        self.digit = torch.tensor(digit, dtype=torch.long)

    def __len__(self):
        return len(self.x)


def home(c: int) -> int:
    return int(c) % N_POS


def position_prior(c: int) -> list:
    """p(position | class) of the diffusion training distribution."""
    other = (1.0 - HOME_P) / (N_POS - 1)
    return [HOME_P if q == home(c) else other for q in range(N_POS)]


def training_weights(data: "CanvasSet") -> torch.Tensor:
    """Per-canvas sampling weights that give the biased training distribution (style stays 1/2)."""
    prior = torch.tensor([position_prior(c) for c in range(N_CLASS)])
    return prior[data.labels[:, 0], data.labels[:, 1]]


def target_name(target: dict) -> str:
    parts = []
    if "class" in target:
        parts.append(f"digit {target['class']}")
    if "position" in target:
        parts.append(POSITION_NAMES[target["position"]])
    if "style" in target:
        parts.append(STYLE_NAMES[target["style"]])
    return ", ".join(parts)
