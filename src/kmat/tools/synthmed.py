"""SynthMed: a procedural cross-modal benchmark (seeded, offline, no downloads).

Three classes share their semantics across two imaging "physics":

- ``normal``: tissue without a focal mass;
- ``benign``: a round or oval, smooth, circumscribed, homogeneous mass;
- ``malignant``: an irregular, spiculated, heterogeneous mass.

High-end modality (``synth_mammo``, shown as "mammogram"): sharp, high contrast, fine
fibroglandular texture; masses are *bright* (dense), malignant ones heterogeneous with clustered
microcalcifications. Low-end modality (``synth_sono``, shown as "sonogram"): a fan-shaped field of
view, speckle, blur and *inverted* contrast: masses are dark (hypoechoic); benign ones show
posterior enhancement, malignant ones posterior acoustic shadowing. So the brightness and texture
cues that separate classes on the mammogram do not carry over; shape and margin do.

Every image comes with its attributes, from which captions (for pre-training the demo backbone)
and descriptions (for K-MaT's anchors) are generated with the same vocabulary.

This is SynthMed's far-domain pair (task ``synthmed``). The benchmark has a second, near-domain
pair in :mod:`kmat.tools.synthderm` (task ``synthderm``: dermoscopy -> clinical photograph). What
the pairs share lives here: :class:`SynthPair` (a pair's classes, modalities, renderers and text),
the task-folder writer :func:`write_task`, the description generator :func:`feature_descriptions`,
noise helpers, and :func:`pairs`, both pairs by task name.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from kmat.utils.seeding import seeded_rng

CLASSES = ["normal", "benign", "malignant"]
CLASSNAMES = {"normal": "normal tissue", "benign": "benign lesion", "malignant": "malignant lesion"}
MODALITIES = {"high": ("synth_mammo", "mammogram"), "low": ("synth_sono", "sonogram")}
SPLITS = {"train": 100, "val": 20, "test": 40}  # images per class and modality
IMAGE_SIZE = 48
TASK_CONTRAST = 0.55


@dataclass
class Attributes:
    cls: str
    modality: str  # modality key
    shape: str  # "none", "round", "oval", "lobulated", "irregular"
    margin: str  # "none", "smooth", "spiculated", "indistinct"
    size: str  # "none", "small", "large"
    calcifications: bool
    posterior: str  # "none", "enhancement", "shadowing" (sonogram only)


def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    return x, y


def smooth_noise(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    """Value noise: a coarse random grid bilinearly upsampled, in [0, 1]."""
    n = max(2, size // scale + 2)
    coarse = rng.random((n, n))
    img = Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float64) / 255.0


def _lesion(rng: np.random.Generator, cls: str, size: int) -> tuple[np.ndarray, dict]:
    """Soft lesion mask in [0, 1] and its geometry."""
    if cls == "normal":
        return np.zeros((size, size)), {
            "shape": "none",
            "margin": "none",
            "size": "none",
            "cx": 0,
            "cy": 0,
            "r": 0,
        }
    x, y = grid(size)
    cx, cy = rng.uniform(0.32, 0.68, 2) * size
    big = rng.random() < 0.5
    r = rng.uniform(0.17, 0.22) * size if big else rng.uniform(0.11, 0.15) * size
    dx, dy = x - cx, y - cy
    theta = np.arctan2(dy, dx)
    dist = np.hypot(dx, dy)
    if cls == "benign":
        aspect = 1.0 if rng.random() < 0.5 else rng.uniform(1.3, 1.6)
        rot = rng.uniform(0, math.pi)
        u = dx * math.cos(rot) + dy * math.sin(rot)
        v = -dx * math.sin(rot) + dy * math.cos(rot)
        rho = np.hypot(u / aspect, v) / r * aspect**0.5
        lobulated = rng.random() < 0.2  # some benign masses are gently lobulated
        if lobulated:
            rho = rho / (1.0 + 0.1 * np.cos(rng.integers(3, 5) * np.arctan2(v, u) + rng.uniform(0, 6)))
        mask = 1.0 / (1.0 + np.exp((rho - 1.0) * r / 0.8))
        geo: dict[str, str | float] = {
            "shape": "lobulated" if lobulated else ("round" if aspect == 1.0 else "oval"),
            "margin": "smooth",
        }
    else:
        circumscribed = rng.random() < 0.25  # some carcinomas look circumscribed, without spicules
        radius = np.ones_like(theta)
        amp = (0.02, 0.06) if circumscribed else (0.06, 0.16)
        for k in range(3, 8):
            radius += rng.uniform(*amp) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
        mask = 1.0 / (1.0 + np.exp((dist / (r * radius) - 1.0) * r / 0.6))
        n_spicules = 0 if circumscribed else int(rng.integers(7, 13))
        for ang in rng.uniform(0, 2 * math.pi, n_spicules):
            along = dx * math.cos(ang) + dy * math.sin(ang)
            across = np.abs(-dx * math.sin(ang) + dy * math.cos(ang))
            length = r * rng.uniform(1.8, 2.6)
            spic = (along > 0) & (along < length) & (across < 0.7 + 0.8 * (1 - along / length))
            mask = np.maximum(mask, spic * (1.0 - along / length) * 0.9)
        geo = {
            "shape": "round" if circumscribed else "irregular",
            "margin": "indistinct" if circumscribed else "spiculated",
        }
    geo.update({"size": "large" if big else "small", "cx": cx, "cy": cy, "r": r})
    return mask, geo


def render_mammo(
    rng: np.random.Generator, cls: str, size: int = IMAGE_SIZE, contrast: float = 1.0
) -> tuple[np.ndarray, Attributes]:
    """High-end physics: bright dense masses on fine fibroglandular texture, sharp, high contrast."""
    mask, geo = _lesion(rng, cls, size)
    tissue = 0.18 + 0.22 * smooth_noise(rng, size, 12) + 0.12 * smooth_noise(rng, size, 3)
    tissue += rng.normal(0, 0.03, (size, size))
    calc = False
    if cls == "benign":
        img = tissue + contrast * mask * rng.uniform(0.5, 0.6)
    elif cls == "malignant":
        hetero = 0.4 + 0.6 * smooth_noise(rng, size, 3)
        img = tissue + contrast * mask * rng.uniform(0.35, 0.45) * hetero
        calc = rng.random() < 0.85
        if calc:
            for _ in range(rng.integers(6, 13)):
                px = int(np.clip(geo["cx"] + rng.normal(0, geo["r"] * 0.4), 0, size - 1))
                py = int(np.clip(geo["cy"] + rng.normal(0, geo["r"] * 0.4), 0, size - 1))
                img[py, px] = min(1.0, img[py, px] + 0.7 * contrast)
    else:
        img = tissue
    attrs = Attributes(cls, MODALITIES["high"][0], geo["shape"], geo["margin"], geo["size"], calc, "none")
    return np.clip(img, 0, 1), attrs


def render_sono(
    rng: np.random.Generator, cls: str, size: int = IMAGE_SIZE, contrast: float = 1.0
) -> tuple[np.ndarray, Attributes]:
    """Low-end physics: fan-shaped view, speckle, blur, inverted contrast, posterior features."""
    mask, geo = _lesion(rng, cls, size)
    x, y = grid(size)
    layers = 0.45 + 0.12 * np.sin(y / size * math.pi * rng.uniform(2, 4) + rng.uniform(0, 6))
    layers[y < size * 0.12] *= 0.5  # dark subcutaneous fat band
    img = layers * (0.85 + 0.3 * smooth_noise(rng, size, 10))
    posterior = "none"
    if cls != "normal":
        below = (y > geo["cy"]) & (np.abs(x - geo["cx"]) < geo["r"] * 0.9)
        fade = np.exp(-np.maximum(y - geo["cy"], 0) / (size * 0.6))
        if cls == "benign":
            img = img * (1 - 0.85 * contrast * mask)
            img = img + below * fade * 0.3 * contrast * (1 - mask)
            posterior = "enhancement"
        else:
            hetero = 0.5 + 0.5 * smooth_noise(rng, size, 4)
            img = img * (1 - 0.7 * contrast * mask * hetero)
            img = img * (1 - below * fade * 0.7 * contrast * (1 - mask))
            posterior = "shadowing"
    img = img * rng.gamma(2.0, 0.5, (size, size))  # speckle
    pil = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
    from PIL import ImageFilter

    img = np.asarray(pil.filter(ImageFilter.GaussianBlur(0.9)), dtype=np.float64) / 255.0
    ang = np.degrees(np.arctan2(x - size / 2, y + size * 0.15))
    fan = (np.abs(ang) < 38) & (np.hypot(x - size / 2, y + size * 0.15) < size * 1.12)
    img = img * fan
    attrs = Attributes(cls, MODALITIES["low"][0], geo["shape"], geo["margin"], geo["size"], False, posterior)
    return np.clip(img, 0, 1), attrs


RENDER = {"high": render_mammo, "low": render_sono}


def sample_image(
    seed: int,
    role: str,
    cls: str,
    index: int,
    pool: str = "task",
    size: int = IMAGE_SIZE,
    contrast: float = 1.0,
) -> tuple[Image.Image, Attributes]:
    """Image ``index`` of a class in a modality; depends only on its arguments.

    ``contrast`` scales the lesion's contrast against the tissue (the benchmark uses
    :data:`TASK_CONTRAST`, fainter than the pre-training pool: a domain shift like the one between
    a foundation model's pre-training figures and a clinical dataset).
    """
    return PAIR.sample_image(seed, role, cls, index, pool=pool, size=size, contrast=contrast)


# ----------------------------------------------------------------------------- text
_SHAPE = {"round": "round", "oval": "oval", "irregular": "irregular", "lobulated": "lobulated"}
_MARGIN = {
    "smooth": "smooth circumscribed margins",
    "spiculated": "spiculated irregular margins",
    "indistinct": "indistinct margins",
}


def caption(attrs: Attributes, rng: np.random.Generator, with_class: bool, short: bool = False) -> str:
    """A caption generated from an image's rendered attributes (for pre-training).

    ``with_class`` adds the class name; ``short`` gives only modality and class name (as terse
    figure captions do).
    """
    mod = "mammogram" if attrs.modality == MODALITIES["high"][0] else "sonogram"
    if short:
        forms = ["a {mod} of a {name}", "{name} on a {mod}", "{name}, {mod}", "{mod} showing {name}"]
        return forms[rng.integers(len(forms))].format(mod=mod, name=CLASSNAMES[attrs.cls]) + "."
    if attrs.cls == "normal":
        body = {
            "mammogram": [
                "with fine fibroglandular texture and no mass",
                "of dense tissue without a focal mass",
                "with scattered texture and no lesion",
            ],
            "sonogram": [
                "of layered tissue without a focal mass",
                "with homogeneous speckle and no lesion",
                "showing tissue layers in a fan shaped view and no mass",
            ],
        }[mod]
        text = f"a {mod} {body[rng.integers(len(body))]}"
    else:
        bright = "bright dense" if mod == "mammogram" else "dark hypoechoic"
        shape = _SHAPE[attrs.shape]
        margin = _MARGIN[attrs.margin]
        extra = []
        if attrs.calcifications:
            extra.append("clustered microcalcifications")
        if attrs.posterior == "enhancement":
            extra.append("posterior acoustic enhancement")
        if attrs.posterior == "shadowing":
            extra.append("posterior acoustic shadowing")
        texture = "homogeneous" if attrs.cls == "benign" else "heterogeneous"
        parts = [f"a {mod} showing a {attrs.size} {shape} {bright} mass", f"with {margin}"]
        if rng.random() < 0.6:
            parts.append(f"and {texture} interior")
        if extra:
            parts.append("and " + " and ".join(extra))
        text = " ".join(parts)
    if with_class:
        text = (
            f"{text}, {CLASSNAMES[attrs.cls]}" if rng.random() < 0.5 else f"{CLASSNAMES[attrs.cls]}: {text}"
        )
    return text + "."


_DESC_FEATURES = {
    ("high", "normal"): [
        "fine fibroglandular texture",
        "scattered dense tissue without a focal mass",
        "no mass and no calcification",
        "symmetric background texture",
        "no architectural distortion",
        "uniform texture across the field",
        "no bright focal density",
    ],
    ("high", "benign"): [
        "a round bright dense mass",
        "an oval bright mass",
        "smooth circumscribed margins",
        "a homogeneous dense interior",
        "no calcifications inside the mass",
        "a well defined edge",
        "a small or large oval density",
    ],
    ("high", "malignant"): [
        "an irregular bright dense mass",
        "spiculated margins radiating into the tissue",
        "a heterogeneous dense interior",
        "clustered microcalcifications",
        "thin bright spicules around the mass",
        "an ill defined irregular outline",
        "bright specks of calcification inside the mass",
    ],
    ("low", "normal"): [
        "layered tissue without a focal mass",
        "homogeneous speckle in a fan shaped view",
        "a dark fat band near the skin",
        "no hypoechoic lesion",
        "no posterior shadowing",
        "uniform echoes across the field",
        "parallel tissue layers",
    ],
    ("low", "benign"): [
        "a round dark hypoechoic mass",
        "an oval dark mass",
        "smooth circumscribed margins",
        "posterior acoustic enhancement below the mass",
        "a homogeneous dark interior",
        "a bright band beneath the lesion",
        "a well defined anechoic looking lesion",
    ],
    ("low", "malignant"): [
        "an irregular dark hypoechoic mass",
        "spiculated irregular margins",
        "posterior acoustic shadowing below the mass",
        "a heterogeneous dark interior",
        "a dark shadow beneath the lesion",
        "an ill defined irregular outline",
        "angular margins with spicules",
    ],
}


DESCRIPTION_TEMPLATES = [
    "A {name} on a {mod} shows {a} and {b}.",
    "On a {mod}, {a} with {b} indicates a {name}.",
    "A {mod} of a {name} typically presents {a} together with {b}.",
    "Look for {a} and {b} when a {name} is seen on a {mod}.",
]


def feature_descriptions(
    features: dict[tuple[str, str], list[str]],
    classes: list[str],
    classnames: dict[str, str],
    modalities: dict[str, tuple[str, str]],
    n: int = 56,
    templates: list[str] = DESCRIPTION_TEMPLATES,
) -> dict[str, dict[str, list[str]]]:
    """Descriptions ``{modality key: {class: [sentence]}}``: every template filled with every pair
    of the (role, class)'s features, in a seeded order, the first ``n`` (deterministic)."""
    out: dict[str, dict[str, list[str]]] = {}
    for role, (key, shown) in modalities.items():
        out[key] = {}
        for cls in classes:
            feats = features[(role, cls)]
            name = classnames[cls]
            sents: list[str] = []
            for t in templates:
                for i, a in enumerate(feats):
                    for b in feats[i + 1 :]:
                        s = t.format(name=name, mod=shown, a=a, b=b)
                        if s not in sents:
                            sents.append(s)
            rng = np.random.default_rng(len(key) * 31 + classes.index(cls))
            order = rng.permutation(len(sents))
            out[key][cls] = [sents[i] for i in order[:n]]
    return out


def descriptions(n: int = 56) -> dict[str, dict[str, list[str]]]:
    """Descriptions per (modality, class) written with the renderer's vocabulary (deterministic)."""
    return feature_descriptions(_DESC_FEATURES, CLASSES, CLASSNAMES, MODALITIES, n)


# ----------------------------------------------------------------------------- pairs
Renderer = Callable[[np.random.Generator, str, int, float], tuple[np.ndarray, Any]]
Captioner = Callable[[Any, np.random.Generator, bool, bool], str]


@dataclass(frozen=True, eq=False)
class SynthPair:
    """One pair of SynthMed: the same classes through a high-end and a low-end renderer, and text
    generated from the rendered attributes.

    ``render[role](rng, cls, size, contrast)`` returns an image in [0, 1] (``(H, W)`` grey or
    ``(H, W, 3)`` colour) and its attributes (with ``cls`` and ``modality``);
    ``caption(attrs, rng, with_class, short)`` a pre-training caption; ``descriptions()`` the
    shipped descriptions ``{modality key: {class: [sentence]}}``. ``namespace`` prefixes the
    parts of every image's seeded generator (so that two pairs never share a random stream).
    """

    task: str
    title: str
    module: str
    version: str
    classes: list[str]
    classnames: dict[str, str]
    modalities: dict[str, tuple[str, str]]  # role -> (modality key, display name)
    render: Mapping[str, Renderer]
    caption: Captioner
    descriptions: Callable[[], dict[str, dict[str, list[str]]]]
    splits: dict[str, int]  # default images per class and modality in each split
    size: int
    task_contrast: float
    namespace: tuple[str, ...] = ()

    def sample_image(
        self,
        seed: int,
        role: str,
        cls: str,
        index: int,
        pool: str = "task",
        size: int | None = None,
        contrast: float = 1.0,
    ) -> tuple[Image.Image, Any]:
        """Image ``index`` of a class in a modality (RGB) and its attributes; depends only on the
        arguments. ``contrast`` scales the lesion against its background (the benchmark uses
        :attr:`task_contrast`)."""
        rng = seeded_rng(*self.namespace, seed, pool, role, cls, index)
        arr, attrs = self.render[role](rng, cls, size or self.size, contrast)
        return Image.fromarray((arr * 255).astype(np.uint8)).convert("RGB"), attrs


def write_task(
    pair: SynthPair,
    folder: str | Path,
    seed: int = 0,
    splits: dict[str, int] | None = None,
    size: int | None = None,
    contrast: float | None = None,
) -> Path:
    """Write a pair's task folder (images, manifests, task.json, descriptions.json); idempotent."""
    folder = Path(folder)
    splits = splits or pair.splits
    size = size or pair.size
    contrast = pair.task_contrast if contrast is None else contrast
    name = pair.task
    spec: dict[str, Any] = {
        "task": name,
        "title": pair.title,
        "classes": pair.classes,
        "classnames": pair.classnames,
        "high_end": {
            "dataset": name,
            "modality": pair.modalities["high"][0],
            "display_name": pair.modalities["high"][1],
            "manifest": f"{name}__high.csv",
        },
        "low_end": {
            "dataset": name,
            "modality": pair.modalities["low"][0],
            "display_name": pair.modalities["low"][1],
            "manifest": f"{name}__low.csv",
        },
        "expected_counts": {
            r: {s: n * len(pair.classes) for s, n in splits.items()} for r in ("high_end", "low_end")
        },
        "split_provenance": {
            "high_end": f"generated by {pair.module} (seed={seed})",
            "low_end": f"generated by {pair.module} (seed={seed})",
        },
        "generator": {"seed": seed, "splits": splits, "size": size, "contrast": contrast},
    }
    for role, key in (("high", "high_end"), ("low", "low_end")):
        mod = pair.modalities[role][0]
        rows = []
        index = 0
        for split, n in splits.items():
            for cls in pair.classes:
                for i in range(n):
                    rel = f"images/{mod}/{split}/{cls}_{i:04d}.png"
                    path = folder / rel
                    if not path.is_file():
                        img, _ = pair.sample_image(
                            seed, role, cls, index + i, pool=split, size=size, contrast=contrast
                        )
                        path.parent.mkdir(parents=True, exist_ok=True)
                        img.save(path)
                    rows.append([rel, cls, split, mod, name, rel])
            index += n
        with open(folder / spec[key]["manifest"], "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "label", "split", "modality", "dataset", "group_id"])
            w.writerows(rows)
    (folder / "descriptions.json").write_text(json.dumps(pair.descriptions(), indent=2) + "\n")
    (folder / "task.json").write_text(json.dumps(spec, indent=2))
    return folder


PAIR = SynthPair(
    task="synthmed",
    title="SynthMed: synthetic mammogram -> sonogram",
    module="kmat.tools.synthmed",
    version="v1",
    classes=CLASSES,
    classnames=CLASSNAMES,
    modalities=MODALITIES,
    render=RENDER,
    caption=caption,
    descriptions=descriptions,
    splits=SPLITS,
    size=IMAGE_SIZE,
    task_contrast=TASK_CONTRAST,
)


def write_synthmed(
    folder: str | Path,
    seed: int = 0,
    splits: dict[str, int] | None = None,
    size: int = IMAGE_SIZE,
    contrast: float = TASK_CONTRAST,
) -> Path:
    """Write the SynthMed mammogram -> sonogram task (:func:`write_task`); idempotent."""
    return write_task(PAIR, folder, seed=seed, splits=splits, size=size, contrast=contrast)
