"""What the main command writes besides the images: the side-by-side comparison and the summary text."""
from __future__ import annotations

import io

MIN_DISPLAY = 256        # the comparison shows small images enlarged (nearest neighbour)


def comparison_image(amdm_png: bytes, base_png: bytes, summary: dict | None, caption_extra: str = ""):
    from PIL import Image, ImageDraw, ImageFont

    a = Image.open(io.BytesIO(amdm_png)).convert("RGB")
    b = Image.open(io.BytesIO(base_png)).convert("RGB")
    zoom = max(1, -(-MIN_DISPLAY // max(a.height, 1)))
    if zoom > 1:
        a = a.resize((a.width * zoom, a.height * zoom), Image.NEAREST)
        b = b.resize((b.width * zoom, b.height * zoom), Image.NEAREST)
        caption_extra = (caption_extra + "; " if caption_extra else "") + f"shown at {zoom}x"
    w, h = max(a.width, b.width), max(a.height, b.height)
    pad, head = 12, 34
    lines = summary_lines(summary) + ([caption_extra] if caption_extra else [])
    try:
        font = ImageFont.load_default(size=16)
        small = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1
        font = small = ImageFont.load_default()
    foot = 10 + 18 * len(lines)
    canvas = Image.new("RGB", (2 * w + 3 * pad, head + h + pad + foot), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (img, label) in enumerate(((a, "AMDM: base + helper (aggregated)"), (b, "base model alone, same seed"))):
        x = pad + i * (w + pad)
        canvas.paste(img, (x, head))
        draw.text((x, 9), label, fill="black", font=font)
    y = head + h + pad
    for line in lines:
        draw.text((pad, y), line, fill=(40, 40, 40), font=small)
        y += 18
    return canvas


def summary_lines(s: dict | None) -> list[str]:
    if not s:
        return []
    if s.get("window_steps"):
        a, b = s["window_steps"]
        first = (f"window: steps {a}-{b} of {s['steps']}, sigma {s['window_sigmas'][0]:g} -> "
                 f"{s['window_sigmas'][1]:g} ({s['aggregation']})")
    else:
        first = f"no aggregation window in {s['steps']} steps"
    evals = ", ".join(f"{'*' if m['base'] else ''}{m['label']}: {m['evaluations']}" for m in s["members"])
    return [first, f"evaluations: {evals} (* = base)", f"time: {s['seconds']:.2f} s"]


def summary_text(s: dict | None, server_text: str | None) -> str:
    if server_text:
        return server_text
    if s:
        return "\n".join(summary_lines(s))
    return "no run summary: the workflow has no Multi-Model Sampler (the Multi-Model Guider logs its summary on the server)"
