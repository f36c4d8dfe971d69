"""Image loading and the two preprocessing pipelines (METHODS.md, "Shared training recipe").

- test: resize the shorter side to the backbone's size (bicubic), centre crop, CLIP-normalise;
- train: RandomResizedCrop(size, scale 0.08-1, ratio 3/4-4/3, bicubic), no flip, normalise.
  The crop of view ``e`` of an image is drawn from a generator seeded by (image key, view, seed),
  so a view is reproducible and independent of batch order and of the global random state.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)


class ImageError(ValueError):
    """An image file could not be read."""


def load_image(path: str | Path) -> Image.Image:
    """Open an image as 8-bit RGB (grayscale, RGBA, palette and 16-bit images are converted)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                arr = np.asarray(im, dtype=np.float64)
                lo, hi = float(arr.min()), float(arr.max())
                arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
                im = Image.fromarray(arr.astype(np.uint8))
            return im.convert("RGB")
    except FileNotFoundError as err:
        raise ImageError(f"{path}: image file not found") from err
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ImageError(f"{path}: unreadable or corrupt image ({err})") from err


def _normalize(img: Image.Image, mean, std) -> Tensor:
    return TF.normalize(TF.to_tensor(img), mean, std)


def test_transform(img: Image.Image, size: int, mean, std) -> Tensor:
    """Resize the shorter side to ``size`` (bicubic), centre-crop ``size``, normalise."""
    img = TF.resize(img, size, interpolation=InterpolationMode.BICUBIC)
    img = TF.center_crop(img, [size, size])
    return _normalize(img, mean, std)


def view_seed(key: str, view: int, seed: int) -> int:
    """A 63-bit seed for view ``view`` of image ``key`` under run seed ``seed``."""
    digest = hashlib.sha256(f"{key}|{view}|{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def random_resized_crop_box(width: int, height: int, gen: torch.Generator) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random crop covering 8-100 % of the area with aspect 3/4-4/3.

    Ten rejection-sampled attempts; otherwise a centre crop at the nearest allowed aspect ratio.
    """
    area = width * height
    log_lo, log_hi = math.log(RATIO[0]), math.log(RATIO[1])
    for _ in range(10):
        u = torch.rand(3, generator=gen).tolist()
        target = area * (SCALE[0] + (SCALE[1] - SCALE[0]) * u[0])
        aspect = math.exp(log_lo + (log_hi - log_lo) * u[1])
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=gen))
            left = int(torch.randint(0, width - w + 1, (1,), generator=gen))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < RATIO[0]:
        w, h = width, int(round(width / RATIO[0]))
    elif in_ratio > RATIO[1]:
        h, w = height, int(round(height * RATIO[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def train_transform(img: Image.Image, size: int, mean, std, key: str, view: int, seed: int) -> Tensor:
    """View ``view`` of an image: a seeded random resized crop to ``size`` (bicubic), normalised."""
    gen = torch.Generator().manual_seed(view_seed(key, view, seed))
    top, left, h, w = random_resized_crop_box(img.width, img.height, gen)
    img = TF.resized_crop(img, top, left, h, w, [size, size], interpolation=InterpolationMode.BICUBIC)
    return _normalize(img, mean, std)
