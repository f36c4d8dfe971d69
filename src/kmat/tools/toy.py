"""A tiny procedural cross-modal task (for tests, examples and smoke runs).

Three classes drawn as a blob: ``normal`` (no blob), ``benign`` (round, smooth), ``malignant``
(irregular, spiky). The high-end modality renders them sharp and bright on dark; the low-end one
inverted, blurred and speckled. Written in the manifest format with a ``descriptions.json``.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = ["normal", "benign", "malignant"]
CLASSNAMES = {"normal": "normal tissue", "benign": "benign lesion", "malignant": "malignant lesion"}
SHAPE_WORDS = {
    "normal": ["no focal lesion", "homogeneous background texture", "no mass is visible"],
    "benign": [
        "a round smooth-margined mass",
        "an oval circumscribed lesion",
        "a homogeneous well-defined blob",
    ],
    "malignant": [
        "an irregular spiculated mass",
        "a heterogeneous lesion with jagged margins",
        "a spiky ill-defined blob",
    ],
}
MODALITY_WORDS = {
    "hiscan": ["on a sharp high-contrast hiscan image", "in a bright hiscan acquisition with fine texture"],
    "loscan": ["on a blurry speckled loscan image", "in a dark inverted loscan view with noise"],
}


def _blob(draw: ImageDraw.ImageDraw, rng: np.random.Generator, cls: str, size: int, fill: int) -> None:
    if cls == "normal":
        return
    cx, cy = rng.uniform(0.35, 0.65, 2) * size
    r = rng.uniform(0.15, 0.25) * size
    n = 24
    pts = []
    for k in range(n):
        a = 2 * math.pi * k / n
        rr = r * (
            1.0 + (rng.uniform(-0.5, 0.6) if cls == "malignant" and k % 2 else rng.uniform(-0.05, 0.05))
        )
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    draw.polygon(pts, fill=fill)


def render(cls: str, modality: str, rng: np.random.Generator, size: int = 48) -> Image.Image:
    """One image of class ``cls`` in ``modality`` ("hiscan" sharp, "loscan" inverted/blurred/noisy)."""
    base = rng.normal(40, 10, (size, size)).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(base, mode="L")
    _blob(ImageDraw.Draw(img), rng, cls, size, fill=int(rng.uniform(190, 240)))
    if modality == "loscan":
        arr = 255 - np.asarray(img.filter(ImageFilter.GaussianBlur(2.0)), dtype=np.float64)
        arr = arr * rng.gamma(4.0, 0.25, arr.shape)
        img = Image.fromarray(arr.clip(0, 255).astype(np.uint8), mode="L")
    return img.convert("RGB")


def write_toy_task(
    folder: str | Path,
    n_train: int = 8,
    n_val: int = 4,
    n_test: int = 4,
    seed: int = 0,
    size: int = 48,
    n_descriptions: int = 6,
) -> Path:
    """Write the toy task (per class and modality: n_train/n_val/n_test images) and return its folder."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    spec: dict[str, Any] = {
        "task": "toy",
        "classes": CLASSES,
        "classnames": CLASSNAMES,
        "high_end": {
            "dataset": "toy",
            "modality": "hiscan",
            "display_name": "hiscan",
            "manifest": "toy__hiscan.csv",
        },
        "low_end": {
            "dataset": "toy",
            "modality": "loscan",
            "display_name": "loscan",
            "manifest": "toy__loscan.csv",
        },
        "split_provenance": {"high_end": f"generated (seed={seed})", "low_end": f"generated (seed={seed})"},
    }
    for key in ("high_end", "low_end"):
        mod = spec[key]["modality"]
        rows = []
        for cls in CLASSES:
            for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
                for i in range(n):
                    rel = f"images/{mod}/{cls}_{split}_{i:03d}.png"
                    (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                    render(cls, mod, rng, size).save(folder / rel)
                    rows.append([rel, cls, split, mod, "toy", f"{mod}-{cls}-{split}-{i}"])
        with open(folder / spec[key]["manifest"], "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "label", "split", "modality", "dataset", "group_id"])
            w.writerows(rows)
    desc: dict[str, dict[str, list[str]]] = {}
    for mod, mwords in MODALITY_WORDS.items():
        desc[mod] = {}
        for cls in CLASSES:
            sents = [f"A {CLASSNAMES[cls]} shows {s} {m}." for s in SHAPE_WORDS[cls] for m in mwords]
            desc[mod][cls] = sents[:n_descriptions]
    (folder / "descriptions.json").write_text(json.dumps(desc, indent=2))
    (folder / "task.json").write_text(json.dumps(spec, indent=2))
    return folder
