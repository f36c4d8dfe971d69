"""SynthDerm: SynthMed's near-domain pair, a synthetic dermoscopy image -> clinical photograph.

The same skin lesion classes through two acquisitions of the same (visible-light) physics, as in
the paper's dermoscopy -> clinical photograph tasks:

- ``nevus`` ("melanocytic nevus"): small, round or oval, symmetric, a regular border, one uniform
  light or dark brown; under the dermoscope a regular reticular pigment network fading at the
  periphery, sometimes regular globules;
- ``melanoma``: mostly large, asymmetric, an irregular notched and partly blurred border, several
  colours (dark brown, black, blue grey, red, white); under the dermoscope an atypical network,
  a blue-white veil, irregular dots and peripheral streaks;
- ``keratosis`` ("seborrheic keratosis"): oval, sharply demarcated ("stuck on"), tan to brown and
  mottled; under the dermoscope milia-like cysts (white dots), comedo-like openings (dark pits) and
  cerebriform fissures, no network.

High-end modality (``synth_dermoscopy``, shown as "dermoscopy image"): a close-up, the lesion
fills much of the frame, even bright lighting inside the dark ring of a contact dermoscope, fine
structures rendered at twice the resolution. Low-end modality (``synth_clinical``, shown as
"clinical photograph"): a wider field (the lesion is about half as large in the frame) rendered at
half to two thirds of the resolution and upsampled, uneven lighting, a perspective warp, a colour
cast and sensor noise, on skin with hair, freckles, creases and sometimes clothing at the edge.
Shape, colour pattern and border carry over; texture and scale do not.

Images, captions and descriptions come from the same attributes and vocabulary, as in
:mod:`kmat.tools.synthmed`, whose pair machinery (:class:`~kmat.tools.synthmed.SynthPair`,
:func:`~kmat.tools.synthmed.write_task`) this module uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from kmat.tools.synthmed import SynthPair, feature_descriptions, smooth_noise, write_task

CLASSES = ["nevus", "melanoma", "keratosis"]
CLASSNAMES = {"nevus": "melanocytic nevus", "melanoma": "melanoma", "keratosis": "seborrheic keratosis"}
MODALITIES = {
    "high": ("synth_dermoscopy", "dermoscopy image"),
    "low": ("synth_clinical", "clinical photograph"),
}
SPLITS = {"train": 100, "val": 20, "test": 40}  # images per class and modality
IMAGE_SIZE = 48
TASK_CONTRAST = 0.75

COLOURS = {  # RGB in [0, 1]
    "tan": (0.68, 0.50, 0.34),
    "light brown": (0.57, 0.38, 0.24),
    "dark brown": (0.40, 0.24, 0.14),
    "black": (0.14, 0.10, 0.09),
    "blue grey": (0.42, 0.48, 0.60),
    "red": (0.80, 0.38, 0.38),
    "white": (0.93, 0.90, 0.88),
}
SKIN = [(0.95, 0.82, 0.74), (0.90, 0.73, 0.62), (0.83, 0.65, 0.53)]  # light, medium, darker


@dataclass
class Attributes:
    cls: str
    modality: str  # modality key
    shape: str  # "round", "oval", "asymmetric"
    border: str  # "regular", "irregular", "sharp"
    colours: tuple[str, ...]  # lesion colours (keys of COLOURS), main colour first
    size: str  # "small", "large"
    structures: tuple[str, ...] = ()  # dermoscopic structures drawn (dermoscopy image only)
    surroundings: tuple[str, ...] = ()  # background structures (clinical photograph)


# ----------------------------------------------------------------------------- geometry and paint
def _geometry(rng: np.random.Generator, cls: str) -> dict[str, Any]:
    """Shape, border and colours of a lesion, independent of how it is photographed."""
    harmonics: list[tuple[int, float, float]] = []
    geo: dict[str, Any]
    if cls == "nevus":
        aspect = 1.0 if rng.random() < 0.5 else rng.uniform(1.15, 1.35)
        harmonics += [(k, rng.uniform(0.01, 0.025), rng.uniform(0, 2 * math.pi)) for k in (3, 4, 5)]
        big = rng.random() < 0.3
        geo = {"shape": "round" if aspect == 1.0 else "oval", "border": "regular", "sharp": 14.0}
        geo["colours"] = ("light brown",) if rng.random() < 0.4 else ("dark brown",)
    elif cls == "melanoma":
        aspect = rng.uniform(1.05, 1.4)
        harmonics += [(k, rng.uniform(0.06, 0.12), rng.uniform(0, 2 * math.pi)) for k in (2, 3)]
        harmonics += [(k, rng.uniform(0.02, 0.045), rng.uniform(0, 2 * math.pi)) for k in range(5, 10)]
        big = rng.random() < 0.75
        geo = {"shape": "asymmetric", "border": "irregular", "sharp": 9.0}
        extra = [c for c in ("black", "blue grey", "red", "light brown") if rng.random() < 0.55]
        if not extra:
            extra = ["black"]
        geo["colours"] = ("dark brown", *extra[:3])
    else:
        aspect = rng.uniform(1.2, 1.6)
        harmonics += [(k, rng.uniform(0.01, 0.03), rng.uniform(0, 2 * math.pi)) for k in (2, 3, 4)]
        big = rng.random() < 0.5
        geo = {"shape": "oval", "border": "sharp", "sharp": 30.0}
        u = rng.random()
        geo["colours"] = (
            ("tan",) if u < 0.45 else (("tan", "light brown") if u < 0.85 else ("light brown", "dark brown"))
        )
    geo.update(
        {
            "cls": cls,
            "size": "large" if big else "small",
            "aspect": aspect,
            "rot": rng.uniform(0, math.pi),
            "harmonics": harmonics,
            "blur_phase": rng.uniform(0, 2 * math.pi),
        }
    )
    return geo


def _mask(geo: dict[str, Any], u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Soft lesion mask in [0, 1] at lesion coordinates ``u, v`` (units of the lesion's radius)."""
    rot, aspect = geo["rot"], geo["aspect"]
    a = u * math.cos(rot) + v * math.sin(rot)
    b = -u * math.sin(rot) + v * math.cos(rot)
    theta = np.arctan2(b, a)
    rho = np.hypot(a / aspect**0.5, b * aspect**0.5)
    radius = np.ones_like(theta)
    for k, amp, phase in geo["harmonics"]:
        radius += amp * np.cos(k * theta + phase)
    sharp = np.full_like(theta, geo["sharp"])
    if geo["border"] == "irregular":  # part of a melanoma's border is blurred, part sharp
        sharp = sharp * (0.45 + 0.55 * (0.5 + 0.5 * np.cos(theta + geo["blur_phase"])))
    return 1.0 / (1.0 + np.exp(np.clip((rho / radius - 1.0) * sharp, -30, 30)))


def _dots(
    rng: np.random.Generator, u: np.ndarray, v: np.ndarray, n: int, radius: float, spread: tuple[float, float]
) -> np.ndarray:
    """``n`` soft round dots of ``radius`` (lesion units) at distances ``spread`` from the centre."""
    out = np.zeros_like(u)
    for _ in range(n):
        ang, dist = rng.uniform(0, 2 * math.pi), rng.uniform(*spread)
        d = np.hypot(u - dist * math.cos(ang), v - dist * math.sin(ang))
        out = np.maximum(out, np.clip(1.5 - d / radius, 0, 1))
    return out


def _network(
    rng: np.random.Generator, u: np.ndarray, v: np.ndarray, period: float, jitter: float, width: float
) -> np.ndarray:
    """A pigment network: lines of a jittered grid, in [0, 1] (1 on a line)."""
    n = u.shape[0]
    ang = rng.uniform(0, math.pi)
    a = u * math.cos(ang) + v * math.sin(ang) + jitter * (smooth_noise(rng, n, max(2, n // 8)) - 0.5)
    b = -u * math.sin(ang) + v * math.cos(ang) + jitter * (smooth_noise(rng, n, max(2, n // 8)) - 0.5)
    line = np.minimum(np.abs(np.sin(math.pi * a / period)), np.abs(np.sin(math.pi * b / period)))
    return np.exp(-((line / width) ** 2))


def _paint(
    rng: np.random.Generator,
    img: np.ndarray,
    geo: dict[str, Any],
    u: np.ndarray,
    v: np.ndarray,
    contrast: float,
    dermoscopic: bool,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Paint the lesion (colour pattern; with ``dermoscopic`` its fine structures) onto ``img``."""
    n = img.shape[0]
    mask = _mask(geo, u, v)
    cols = [np.array(COLOURS[c]) for c in geo["colours"]]
    r_px = max(2.0, n / max(1e-6, float(u.max() - u.min())))  # pixels per lesion radius
    blob = max(2, int(r_px * 0.6))
    cls = geo["cls"]
    if cls == "nevus":
        centre = np.exp(-(u**2 + v**2))  # slightly darker centre, same hue
        colour = cols[0][None, None] * (1.0 - 0.12 * centre[..., None])
    elif cls == "melanoma":
        fields = np.stack([smooth_noise(rng, n, blob) + (0.25 if i == 0 else 0.0) for i in range(len(cols))])
        which = fields.argmax(0)
        colour = np.stack(cols)[which]
    else:
        mott = smooth_noise(rng, n, max(2, blob // 2))[..., None]
        colour = (
            cols[0] + (cols[-1] - cols[0]) * (0.2 + 0.6 * mott)
            if len(cols) > 1
            else cols[0] * (0.92 + 0.16 * mott)
        )
    structures: list[str] = []
    if dermoscopic:
        if cls == "nevus":
            net = _network(rng, u, v, period=rng.uniform(0.22, 0.28), jitter=0.12, width=0.22) * mask**2
            colour = colour * (1 - 0.35 * net[..., None])
            structures.append("a regular reticular pigment network")
            if rng.random() < 0.35:
                glob = _dots(rng, u, v, int(rng.integers(5, 9)), 0.07, (0.2, 0.55))
                colour = colour * (1 - 0.45 * glob[..., None])
                structures.append("regular brown globules")
        elif cls == "melanoma":
            if rng.random() < 0.6:
                part = smooth_noise(rng, n, blob) > 0.45
                net = _network(rng, u, v, period=rng.uniform(0.25, 0.4), jitter=0.2, width=0.4) * part
                colour = colour * (1 - 0.6 * net[..., None])
                structures.append("an atypical pigment network")
            if rng.random() < 0.55:
                veil = np.clip((smooth_noise(rng, n, blob) - 0.6) * 6, 0, 1)[..., None]
                colour = colour * (1 - veil) + veil * (
                    0.6 * np.array(COLOURS["blue grey"]) + 0.4 * np.array(COLOURS["white"])
                )
                structures.append("a blue white veil")
            if rng.random() < 0.7:
                dots = _dots(rng, u, v, int(rng.integers(6, 14)), rng.uniform(0.04, 0.06), (0.45, 0.95))
                colour = colour * (1 - 0.7 * dots[..., None])
                structures.append("irregular dots")
            if rng.random() < 0.5:
                streaks = np.zeros_like(u)
                for ang in rng.uniform(0, 2 * math.pi, int(rng.integers(4, 9))):
                    along = u * math.cos(ang) + v * math.sin(ang)
                    across = np.abs(-u * math.sin(ang) + v * math.cos(ang))
                    streaks = np.maximum(streaks, ((along > 0.75) & (along < 1.15) & (across < 0.04)) * 1.0)
                mask = np.maximum(mask, 0.8 * streaks)
                colour = colour * (1 - 0.4 * streaks[..., None])
                structures.append("peripheral streaks")
            if rng.random() < 0.3:
                scar = np.clip((smooth_noise(rng, n, blob) - 0.7) * 8, 0, 1)[..., None] * mask[..., None]
                colour = colour * (1 - scar) + scar * np.array(COLOURS["white"])
                structures.append("white regression areas")
        else:
            fiss = np.abs(np.sin(2 * math.pi * 2.5 * smooth_noise(rng, n, blob)))
            fiss = np.exp(-((fiss / 0.25) ** 2))
            colour = colour * (1 - 0.35 * fiss[..., None])
            structures.append("cerebriform fissures and ridges")
            cysts = _dots(rng, u, v, int(rng.integers(3, 8)), rng.uniform(0.06, 0.09), (0.0, 0.75))
            colour = colour * (1 - cysts[..., None]) + cysts[..., None] * np.array([0.97, 0.95, 0.85])
            structures.append("milia like cysts")
            if rng.random() < 0.7:
                pits = _dots(rng, u, v, int(rng.integers(2, 6)), rng.uniform(0.05, 0.08), (0.0, 0.75))
                colour = colour * (1 - 0.8 * pits[..., None])
                structures.append("comedo like openings")
    m = (contrast * mask)[..., None]
    return img * (1 - m) + colour * m, tuple(structures)


def _skin(rng: np.random.Generator, n: int, scale: int) -> np.ndarray:
    """Skin of a random tone with gentle blotchiness, (n, n, 3)."""
    tone = np.array(SKIN[int(rng.integers(len(SKIN)))]) * rng.uniform(0.96, 1.04, 3)
    blotch = smooth_noise(rng, n, scale)[..., None] - 0.5
    redness = smooth_noise(rng, n, scale)[..., None] - 0.5
    skin = tone * (1 + 0.08 * blotch) + 0.06 * redness * np.array([1.0, -0.4, -0.4])
    return np.broadcast_to(skin, (n, n, 3)).copy()


def _coords(n: int, extent: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates of an n x n canvas covering [-extent, extent]^2."""
    t = (np.arange(n) + 0.5) / n * 2 * extent - extent
    return np.meshgrid(t, t)


def _to_image(arr: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8))


def _from_image(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float64) / 255.0


# ----------------------------------------------------------------------------- the two acquisitions
def render_dermoscopy(
    rng: np.random.Generator, cls: str, size: int = IMAGE_SIZE, contrast: float = 1.0
) -> tuple[np.ndarray, Attributes]:
    """High-end: close-up, even light, dark dermoscope ring, fine structures (rendered at 2x)."""
    n = 2 * size
    x, y = _coords(n, 1.0)
    geo = _geometry(rng, cls)
    r = rng.uniform(0.5, 0.62) if geo["size"] == "large" else rng.uniform(0.36, 0.46)
    cx, cy = rng.uniform(-0.12, 0.12, 2)
    img = _skin(rng, n, max(2, n // 6))
    furrows = np.abs(np.sin(math.pi * (x * 0.8 + y * 0.6 + 0.05 * smooth_noise(rng, n, 6)) / 0.09))
    img = img * (1 - 0.05 * np.exp(-((furrows / 0.2) ** 2)))[..., None]
    img, structures = _paint(rng, img, geo, (x - cx) / r, (y - cy) / r, contrast, dermoscopic=True)
    rad = np.hypot(x, y)
    img = img * (1 - 0.08 * rad**2)[..., None]
    ring = 1.0 / (1.0 + np.exp((rad - rng.uniform(1.12, 1.22)) * 40))  # the dermoscope's field of view
    img = img * ring[..., None] + 0.04 * (1 - ring[..., None])
    arr = _from_image(_to_image(img).resize((size, size), Image.Resampling.BOX))
    attrs = Attributes(
        cls, MODALITIES["high"][0], geo["shape"], geo["border"], geo["colours"], geo["size"], structures
    )
    return arr, attrs


def _perspective(img: Image.Image, out: int, margin: float, rng: np.random.Generator) -> Image.Image:
    """Warp the centre of ``img`` (its border ``margin`` px wide) into an ``out`` px square seen at
    a random oblique angle: each output corner comes from a jittered point of the source."""
    src = []
    lo, hi = margin, img.width - margin
    for ox, oy in ((0, 0), (1, 0), (1, 1), (0, 1)):
        src.append(
            (
                lo + ox * (hi - lo) + rng.uniform(-0.8, 0.8) * margin,
                lo + oy * (hi - lo) + rng.uniform(-0.8, 0.8) * margin,
            )
        )
    dst = [(0, 0), (out, 0), (out, out), (0, out)]
    rows, rhs = [], []
    for (xo, yo), (xs, ys) in zip(dst, src, strict=True):
        rows.append([xo, yo, 1, 0, 0, 0, -xs * xo, -xs * yo])
        rows.append([0, 0, 0, xo, yo, 1, -ys * xo, -ys * yo])
        rhs += [xs, ys]
    coeffs = np.linalg.solve(np.array(rows, dtype=np.float64), np.array(rhs, dtype=np.float64))
    return img.transform((out, out), Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.BILINEAR)


def render_clinical(
    rng: np.random.Generator, cls: str, size: int = IMAGE_SIZE, contrast: float = 1.0
) -> tuple[np.ndarray, Attributes]:
    """Low-end: wide field on skin with hair, freckles and creases, low resolution, uneven light,
    perspective, colour cast and noise."""
    n = max(8, round(size * rng.uniform(0.55, 0.75)))  # the resolution the lesion is captured at
    extent = 1.3
    nc = round(n * extent)
    x, y = _coords(nc, extent)
    geo = _geometry(rng, cls)
    r = rng.uniform(0.3, 0.36) if geo["size"] == "large" else rng.uniform(0.22, 0.27)
    cx, cy = rng.uniform(-0.4, 0.4, 2)
    img = _skin(rng, nc, max(2, nc // 3))
    surroundings: list[str] = []
    if rng.random() < 0.6:
        crease = np.zeros_like(x)
        for _ in range(int(rng.integers(1, 4))):
            ang, off = rng.uniform(0, math.pi), rng.uniform(-1, 1)
            d = (
                x * math.sin(ang)
                - y * math.cos(ang)
                - off
                - 0.1 * np.sin(3 * (x * math.cos(ang) + y * math.sin(ang)))
            )
            crease = np.maximum(crease, np.exp(-((d / 0.025) ** 2)))
        img = img * (1 - 0.12 * crease)[..., None]
        surroundings.append("skin creases")
    if rng.random() < 0.7:
        spots = np.zeros_like(x)
        for _ in range(int(rng.integers(3, 9))):
            px, py = rng.uniform(-extent, extent, 2)
            if math.hypot(px - cx, py - cy) > r + 0.15:
                d = np.hypot(x - px, y - py) / rng.uniform(0.04, 0.06)
                spots = np.maximum(spots, np.clip(1.5 - d, 0, 1))
        img = img * (1 - 0.25 * spots[..., None] * np.array([0.6, 0.9, 1.0]))
        surroundings.append("freckles")
    img, _ = _paint(rng, img, geo, (x - cx) / r, (y - cy) / r, contrast, dermoscopic=False)
    if cls == "keratosis":  # a raised, waxy surface catches the light
        u, v = (x - cx) / r, (y - cy) / r
        sheen = np.exp(-((u - 0.15) ** 2 + (v + 0.3) ** 2) / 0.1) * _mask(geo, u, v)
        img = img + 0.25 * contrast * sheen[..., None]
    if rng.random() < 0.6:
        hair = np.zeros_like(x)
        for _ in range(int(rng.integers(2, 8))):
            px, py, ang = rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0, math.pi)
            along = (x - px) * math.cos(ang) + (y - py) * math.sin(ang)
            across = -(x - px) * math.sin(ang) + (y - py) * math.cos(ang) - rng.uniform(-0.4, 0.4) * along**2
            hair = np.maximum(
                hair, (np.abs(along) < rng.uniform(0.3, 0.8)) * np.exp(-((across / 0.035) ** 2))
            )
        img = img * (1 - 0.3 * hair[..., None])
        surroundings.append("hair")
    if rng.random() < 0.3:  # clothing or background at one edge
        ang = rng.uniform(0, 2 * math.pi)
        side = x * math.cos(ang) + y * math.sin(ang) - rng.uniform(0.75, 1.0)
        cloth = 1.0 / (1.0 + np.exp(-side * 40))
        img = img * (1 - cloth[..., None]) + cloth[..., None] * rng.uniform(0.1, 0.6, 3)
        surroundings.append("clothing at the edge")
    ang = rng.uniform(0, 2 * math.pi)
    light = 1 + rng.uniform(0.2, 0.4) * (x * math.cos(ang) + y * math.sin(ang)) - 0.12 * (x**2 + y**2)
    img = img * light[..., None]
    pil = _perspective(_to_image(img), n, (nc - n) / 2, rng)
    arr = _from_image(pil.resize((size, size), Image.Resampling.BILINEAR))
    cast = rng.uniform(0.9, 1.1, 3) * rng.uniform(0.85, 1.1)  # white balance and exposure
    grey = arr.mean(-1, keepdims=True)
    arr = (grey + rng.uniform(0.7, 1.1) * (arr - grey)) * cast + rng.normal(0, 0.02, arr.shape)
    attrs = Attributes(
        cls,
        MODALITIES["low"][0],
        geo["shape"],
        geo["border"],
        geo["colours"],
        geo["size"],
        (),
        tuple(surroundings),
    )
    return np.clip(arr, 0, 1), attrs


RENDER = {"high": render_dermoscopy, "low": render_clinical}


# ----------------------------------------------------------------------------- text
_BORDER = {
    "regular": "a regular border",
    "irregular": "an irregular notched border",
    "sharp": "a sharp border",
}


def _colour_phrase(attrs: Attributes, rng: np.random.Generator) -> str:
    if attrs.cls == "nevus":
        return f"uniform {attrs.colours[0]}"
    if attrs.cls == "melanoma":
        picked = [attrs.colours[i] for i in sorted(rng.permutation(len(attrs.colours))[:2])]
        return "multicoloured " + " and ".join(picked)
    return "waxy " + " to ".join(attrs.colours)


def caption(attrs: Attributes, rng: np.random.Generator, with_class: bool, short: bool = False) -> str:
    """A caption generated from an image's rendered attributes (for pre-training): size, shape,
    colours and border, and one dermoscopic structure or (sometimes) the surroundings.

    ``with_class`` adds the class name; ``short`` gives only modality and class name.
    """
    high = attrs.modality == MODALITIES["high"][0]
    mod = MODALITIES["high" if high else "low"][1]
    name = CLASSNAMES[attrs.cls]
    if short:
        forms = ["a {mod} of a {name}", "{name} on a {mod}", "{name}, {mod}", "{mod} showing {name}"]
        return forms[rng.integers(len(forms))].format(mod=mod, name=name) + "."
    look = f"{attrs.size} {attrs.shape} {_colour_phrase(attrs, rng)}"
    text = f"a {mod} of a {look} {'lesion' if high else 'spot'} with {_BORDER[attrs.border]}"
    if attrs.structures:
        text += " and " + attrs.structures[int(rng.integers(len(attrs.structures)))]
    if attrs.surroundings and rng.random() < 0.3:
        text += " among " + attrs.surroundings[int(rng.integers(len(attrs.surroundings)))]
    if with_class:
        text = f"{text}, {name}" if rng.random() < 0.5 else f"{name}: {text}"
    return text + "."


_DESC_FEATURES = {
    ("high", "nevus"): [
        "a symmetric round or oval brown lesion",
        "a regular reticular pigment network",
        "a regular smooth border",
        "a uniform light or dark brown colour",
        "a network that fades evenly at the periphery",
        "a few regular brown globules",
        "a single colour throughout the lesion",
    ],
    ("high", "melanoma"): [
        "an asymmetric irregular lesion",
        "an atypical thick pigment network",
        "an irregular notched border",
        "several colours such as dark brown, black, blue grey and red",
        "a blue white veil",
        "irregular dots and peripheral streaks",
        "white scar like regression areas",
    ],
    ("high", "keratosis"): [
        "a sharply demarcated stuck on lesion",
        "milia like cysts seen as white dots",
        "comedo like openings seen as dark pits",
        "cerebriform fissures and ridges",
        "a mottled tan to brown waxy surface",
        "no pigment network",
        "an oval lesion with a sharp border",
    ],
    ("low", "nevus"): [
        "a small round brown spot on the skin",
        "a symmetric lesion with a regular border",
        "an even light or dark brown colour",
        "a flat uniform mole",
        "a well defined oval brown spot",
        "no colour variation within the spot",
        "a smooth outline against the surrounding skin",
    ],
    ("low", "melanoma"): [
        "an asymmetric dark spot with an irregular border",
        "several colours from brown to black",
        "blue grey and red areas within the lesion",
        "a notched and partly blurred edge",
        "a large multicoloured spot on the skin",
        "an irregular outline against the surrounding skin",
        "patches of black pigment",
    ],
    ("low", "keratosis"): [
        "a stuck on tan or brown spot",
        "a sharply demarcated oval lesion",
        "a rough mottled waxy surface",
        "a light brown lesion with a crisp edge",
        "an even tan to brown colour with a sharp border",
        "a raised looking plaque on the skin",
        "an oval spot that looks pasted on the skin",
    ],
}


def descriptions(n: int = 56) -> dict[str, dict[str, list[str]]]:
    """Descriptions per (modality, class) written with the renderer's vocabulary (deterministic)."""
    return feature_descriptions(_DESC_FEATURES, CLASSES, CLASSNAMES, MODALITIES, n)


PAIR = SynthPair(
    task="synthderm",
    title="SynthMed: synthetic dermoscopy image -> clinical photograph",
    module="kmat.tools.synthderm",
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
    namespace=("synthderm",),
)


def sample_image(
    seed: int,
    role: str,
    cls: str,
    index: int,
    pool: str = "task",
    size: int = IMAGE_SIZE,
    contrast: float = 1.0,
) -> tuple[Image.Image, Attributes]:
    """Image ``index`` of a class in a modality and its attributes; depends only on its arguments."""
    return PAIR.sample_image(seed, role, cls, index, pool=pool, size=size, contrast=contrast)


def write_synthderm(
    folder: str | Path,
    seed: int = 0,
    splits: dict[str, int] | None = None,
    size: int = IMAGE_SIZE,
    contrast: float = TASK_CONTRAST,
) -> Path:
    """Write the SynthDerm dermoscopy -> clinical photograph task (:func:`write_task`); idempotent."""
    return write_task(PAIR, folder, seed=seed, splits=splits, size=size, contrast=contrast)
