"""Image loading and the two preprocessing pipelines (docs/methods.md, "Shared training recipe").

- test: resize the shorter side to the backbone's size (bicubic), centre crop, CLIP-normalise;
- train: RandomResizedCrop(size, scale 0.08-1, ratio 3/4-4/3, bicubic), no flip, normalise.
  The crop of view ``e`` of an image is drawn from a generator seeded by (image key, view, seed),
  so a view is reproducible and independent of batch order and of the global random state.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import SupportsFloat, SupportsIndex

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from kmat.errors import ImageError

SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)


DICOM_SUFFIXES = (".dcm", ".dicom")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", *DICOM_SUFFIXES)
_HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16S", "I;16BS", "I;16LS", "I;16N", "I", "F")


def _scale_to_uint8(arr: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Linear map of [lo, hi] (default: the array's min and max) to 0..255, clipped."""
    arr = np.asarray(arr, dtype=np.float64)
    lo = float(arr.min()) if lo is None else lo
    hi = float(arr.max()) if hi is None else hi
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.clip((arr - lo) / (hi - lo) * 255.0, 0, 255).round().astype(np.uint8)


def _has_dicom_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _first(value: object) -> float:
    """The first value of a (possibly multi-valued) DICOM number."""
    if isinstance(value, list | tuple) or (
        type(value).__name__ == "MultiValue" and isinstance(value, Iterable)
    ):
        value = list(value)[0]
    if not isinstance(value, str | bytes | SupportsFloat | SupportsIndex):
        raise TypeError(f"float() argument must be a string or a real number, not {type(value).__name__!r}")
    return float(value)


def load_dicom(path: str | Path) -> Image.Image:
    """Read a DICOM file (optional ``pydicom``) as 8-bit RGB.

    Grayscale: rescale slope/intercept, then the file's first VOI window (``WindowCenter`` /
    ``WindowWidth``) mapped linearly to 0..255, or min-max when the file has no window;
    ``MONOCHROME1`` is inverted. Colour images are min-max scaled when deeper than 8 bits. Only the
    first frame of a multi-frame file is used.
    """
    path = Path(path)
    try:
        import pydicom
    except ImportError as err:
        raise ImageError(f"{path}: reading DICOM needs pydicom (pip install 'kmat[dicom]')") from err
    if not path.is_file():
        raise ImageError(f"{path}: image file not found")
    try:
        ds = pydicom.dcmread(str(path))
        arr = np.asarray(ds.pixel_array)
    except Exception as err:  # pydicom raises many types for unreadable or compressed data
        raise ImageError(f"{path}: unreadable or corrupt DICOM ({type(err).__name__}: {err})") from err
    samples = int(getattr(ds, "SamplesPerPixel", 1))
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        arr = arr[0]
    if samples == 3:
        rgb = arr if arr.dtype == np.uint8 else _scale_to_uint8(arr)
        return Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    data = arr.astype(np.float64) * float(getattr(ds, "RescaleSlope", 1) or 1) + float(
        getattr(ds, "RescaleIntercept", 0) or 0
    )
    if not np.isfinite(data).all():
        raise ImageError(f"{path}: NaN or infinite pixel values (after rescale); not a usable image")
    center, width = getattr(ds, "WindowCenter", None), getattr(ds, "WindowWidth", None)
    if center is not None and width is not None and _first(width) > 0:
        c, w = _first(center), _first(width)
        gray = _scale_to_uint8(data, c - w / 2.0, c + w / 2.0)
    else:
        gray = _scale_to_uint8(data)
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        gray = 255 - gray
    return Image.fromarray(gray, mode="L").convert("RGB")


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in _HIGH_DEPTH_MODES:
        return Image.fromarray(_scale_to_uint8(np.asarray(im)), mode="L").convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    elif im.mode == "La":
        im = im.convert("LA")
    # alpha is dropped, colour kept (DMID's TIFFs are RGBA with an opaque alpha channel)
    return im.convert("RGB")


_WARNED: set[tuple[str, str]] = set()


def _pass_on(path: Path, caught: list[warnings.WarningMessage]) -> None:
    """Pillow's warnings about an image (a palette with transparency, a large image, ...) carry
    no file name: warn again with it, once per file and message."""
    for w in caught:
        key = (str(path), str(w.message))
        if key not in _WARNED:
            _WARNED.add(key)
            warnings.warn(f"{path}: {w.message}", w.category, stacklevel=3)


def load_image(path: str | Path) -> Image.Image:
    """Open an image as 8-bit RGB.

    JPEG, PNG, TIFF and anything else Pillow reads; grayscale, palette and alpha images are
    converted (alpha dropped); 16-bit and float images are min-max scaled to 8 bits (a float image
    with any NaN or infinite pixel is an :class:`ImageError`, not a black picture); DICOM
    (``.dcm``/``.dicom`` or the ``DICM`` magic) is read with the optional ``pydicom``
    (:func:`load_dicom`). An unreadable file raises :class:`ImageError` naming the file.
    """
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return load_dicom(path)
    try:
        with warnings.catch_warnings(record=True) as caught, Image.open(path) as im:
            warnings.simplefilter("always")
            im.load()
            bad = _non_finite(im)
            rgb = None if bad else _to_rgb(im)
        _pass_on(path, caught)
        if rgb is not None:
            return rgb
    except FileNotFoundError as err:
        raise ImageError(f"{path}: image file not found") from err
    except Image.DecompressionBombError as err:
        raise ImageError(
            f"{path}: image larger than Pillow's safety limit ({err}); if you trust the file, raise "
            "PIL.Image.MAX_IMAGE_PIXELS before loading (or downscale the image)"
        ) from err
    except UnidentifiedImageError as err:
        if _has_dicom_magic(path):
            return load_dicom(path)
        raise ImageError(f"{path}: unreadable or corrupt image ({err})") from err
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageError(f"{path}: unreadable or corrupt image ({err})") from err
    raise ImageError(f"{path}: {bad}")


def image_of(item: str | Path | Image.Image | Tensor | np.ndarray, name: str = "image") -> Image.Image:
    """An image given as a file path (:func:`load_image`), a PIL image or a pixel array, as 8-bit RGB.

    A PIL image is converted as a file of its mode would be (grayscale, palette and alpha to RGB,
    16-bit and float min-max scaled). An array (torch tensor or NumPy) holds one image, channels
    first: ``(3, H, W)``, ``(1, H, W)`` or ``(H, W)``, either ``uint8`` (0..255) or floating point
    in [0, 1] (as ``torchvision.transforms.functional.to_tensor`` gives); a normalised tensor is not
    an image and is refused. Unusable pixels are an :class:`ImageError` that starts with ``name``.
    """
    if isinstance(item, str | Path):
        return load_image(item)
    if isinstance(item, Image.Image):
        bad = _non_finite(item)
        if bad:
            raise ImageError(f"{name}: {bad}")
        return _to_rgb(item)
    if isinstance(item, np.ndarray):
        item = torch.from_numpy(np.ascontiguousarray(item))
    if not isinstance(item, Tensor):
        raise ImageError(
            f"{name}: a {type(item).__name__} is not an image (give a path, a PIL image or a tensor)"
        )
    t = item.detach().cpu()
    if t.dim() == 2:
        t = t.unsqueeze(0)
    if t.dim() != 3 or t.shape[0] not in (1, 3) or t.shape[1] == 0 or t.shape[2] == 0:
        raise ImageError(
            f"{name}: a tensor of shape {tuple(item.shape)} is not an image (expected (3, H, W))"
        )
    if t.dtype == torch.uint8:
        arr = t
    elif t.is_floating_point():
        t = t.float()
        if not torch.isfinite(t).all():
            raise ImageError(f"{name}: NaN or infinite pixel values; not a usable image")
        lo, hi = float(t.min()), float(t.max())
        if lo < 0.0 or hi > 1.0:
            raise ImageError(
                f"{name}: float pixel values in [{lo:.3g}, {hi:.3g}], not [0, 1] (a normalised tensor "
                "is not an image: give the image itself)"
            )
        arr = (t * 255.0).round().to(torch.uint8)
    else:
        raise ImageError(f"{name}: a {t.dtype} tensor is not an image (expected uint8 or float in [0, 1])")
    pixels = arr.permute(1, 2, 0).numpy()
    if pixels.shape[2] == 1:
        return Image.fromarray(np.ascontiguousarray(pixels[:, :, 0])).convert("RGB")
    return Image.fromarray(np.ascontiguousarray(pixels))


_READABLE: set[tuple[str, int, int]] = set()


def check_readable(paths: Iterable[str | Path], what: str = "training") -> None:
    """Decode every image once (memoised per path, size and modification time) and raise one
    :class:`ImageError` that names all unreadable ones: a run finds a bad training image before it
    trains, not in its first epoch."""
    bad = []
    for path in dict.fromkeys(Path(p) for p in paths):  # a few-shot subset may repeat an image
        try:
            st = path.stat()
        except OSError as err:
            bad.append(f"{path}: {err.strerror or err}")
            continue
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key in _READABLE:
            continue
        try:
            load_image(path)
        except ImageError as err:
            bad.append(str(err))
            continue
        _READABLE.add(key)
    if bad:
        more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise ImageError(f"{len(bad)} unreadable {what} image(s):\n  " + "\n  ".join(bad[:10]) + more)


def _non_finite(im: Image.Image) -> str:
    """Why a float image cannot be used (NaN or infinite pixels: min-max scaling would turn it
    black or meaningless), or "" when it can."""
    if im.mode != "F":
        return ""
    arr = np.asarray(im)
    n = int(arr.size - np.count_nonzero(np.isfinite(arr)))
    return f"{n} of {arr.size} pixel value(s) are NaN or infinite; not a usable image" if n else ""


def normalize(img: Image.Image, mean, std) -> Tensor:
    """An RGB image as a (3, H, W) float tensor in [0, 1], normalised by ``mean`` and ``std``."""
    return TF.normalize(TF.to_tensor(img), mean, std)


def test_transform(img: Image.Image, size: int, mean, std) -> Tensor:
    """Resize the shorter side to ``size`` (bicubic), centre-crop ``size``, normalise."""
    img = TF.resize(img, size, interpolation=InterpolationMode.BICUBIC)
    img = TF.center_crop(img, [size, size])
    return normalize(img, mean, std)


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
    return normalize(img, mean, std)
