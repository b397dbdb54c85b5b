"""Multi-Model Sweep helpers: parse the values, build each configuration, draw the labelled grid."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .settings import AggregationSettings, ComposeSettings, DeviationSettings

SWEEP_PARAMETERS = ("window_end", "window_start", "base_weight", "helper_weight", "deviation_step", "mode")
MAX_CONFIGURATIONS = 64


def parse_values(parameter: str, text: str, input_name: str = "values") -> list:
    items = [t.strip() for t in str(text).replace(";", ",").split(",") if t.strip()]
    if not items:
        raise ValueError(f"'{input_name}' is empty; give comma-separated values for '{parameter}', e.g. 0.1, 0.2")
    if parameter == "mode":
        return items
    out = []
    for t in items:
        try:
            v = float(t)
        except ValueError:
            raise ValueError(f"'{input_name}': {t!r} is not a number (parameter '{parameter}')") from None
        if not math.isfinite(v):
            raise ValueError(f"'{input_name}': {t!r} is not finite (parameter '{parameter}')")
        out.append(v)
    return out


@dataclasses.dataclass(frozen=True)
class Configuration:
    label: str
    aggregation: object
    deviation: object
    base_weight: float
    helper_scale: float


def configurations(parameter, values, parameter_2, values_2, aggregation, deviation, base_weight):
    """The grid: one Configuration per (value, value_2); invalid combinations raise before any run."""
    grid = [(v, None) for v in values] if parameter_2 == "none" else [(v, w) for w in values_2 for v in values]
    if len(grid) > MAX_CONFIGURATIONS:
        raise ValueError(f"the sweep has {len(grid)} configurations; at most {MAX_CONFIGURATIONS} are allowed")
    out = []
    for v, w in grid:
        c = dict(aggregation=aggregation, deviation=deviation, base_weight=base_weight, helper_scale=1.0)
        label = [_apply(c, parameter, v)]
        if w is not None:
            label.append(_apply(c, parameter_2, w))
        out.append(Configuration(label=", ".join(label), **c))
    return out


def _apply(c: dict, parameter: str, value) -> str:
    if parameter in ("window_end", "window_start"):
        if not hasattr(c["aggregation"], parameter):
            raise ValueError(f"sweep parameter '{parameter}': the connected {type(c['aggregation']).__name__} has no "
                             f"window (Superposition runs the whole schedule); sweep another parameter")
        c["aggregation"] = dataclasses.replace(c["aggregation"], **{parameter: float(value)})
    elif parameter == "base_weight":
        c["base_weight"] = float(value)
    elif parameter == "helper_weight":
        c["helper_scale"] = float(value)
    elif parameter == "deviation_step":
        dev = c["deviation"] or DeviationSettings()
        c["deviation"] = dataclasses.replace(dev, step=float(value))
    elif parameter == "mode":
        agg = c["aggregation"]
        if value in ("spherical", "slerp"):
            if not isinstance(agg, AggregationSettings):
                agg = AggregationSettings()
            c["aggregation"] = dataclasses.replace(agg, mode=value)
        elif value in ("composable", "average"):
            if not isinstance(agg, ComposeSettings):
                agg = ComposeSettings()
            c["aggregation"] = dataclasses.replace(agg, mode=value)
        else:
            raise ValueError(f"'values': mode {value!r} is not one of spherical, slerp, composable, average")
    else:
        raise ValueError(f"sweep parameter {parameter!r} is not one of {SWEEP_PARAMETERS}")
    return f"{parameter}={value:g}" if isinstance(value, float) else f"{parameter}={value}"


def labelled_grid(images: list[torch.Tensor], labels: list[str], columns: int) -> torch.Tensor:
    """IMAGE tensors [1,H,W,3] in 0..1 -> one [1,H',W',3] grid with a caption strip over each tile."""
    h, w = images[0].shape[1], images[0].shape[2]
    font = ImageFont.load_default()
    strip = 14
    rows = math.ceil(len(images) / columns)
    canvas = Image.new("RGB", (columns * w, rows * (h + strip)), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (img, label) in enumerate(zip(images, labels)):
        r, c = divmod(i, columns)
        tile = Image.fromarray((img[0].clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8))
        canvas.paste(tile, (c * w, r * (h + strip) + strip))
        draw.text((c * w + 2, r * (h + strip) + 1), label[: max(4, w // 6)], fill="black", font=font)
    return torch.from_numpy(np.asarray(canvas).astype(np.float32) / 255.0)[None]
