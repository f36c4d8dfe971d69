"""Deployment: classify new images with what a run learned.

A run folder keeps the learned class embeddings of both modalities
(``class_embeddings.safetensors``) beside ``result.json``; predicting a low-end image is
``softmax(s * f . t^L)`` with the frozen image tower, and needs neither the training data nor the
task folder. A method that needs more than class embeddings (CoCoOp's per-image prompts, a cache
or an adapter) saves those tensors in ``head.safetensors`` and classifies from them
(:meth:`kmat.methods.base.Method.deployed_logits`): predicting never special-cases a method's name.
A run of a method that is not registered in this process is classified with its class embeddings
when it saved no head (a user's prompt learner), and refused with what to do when it did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from kmat.backbone import Backbone, load_backbone, load_recorded_backbone
from kmat.data.images import IMAGE_SUFFIXES, image_of, test_transform
from kmat.errors import BackboneError, CheckpointError, ConfigError, ImageError
from kmat.methods import available_methods, get_method
from kmat.methods.base import Deployment, Method
from kmat.methods.config import resolve_config
from kmat.run.artifacts import load_embeddings, load_head
from kmat.run.device import encode_batch_size, resolve_device
from kmat.run.layout import RunLayout
from kmat.run.runner import check_backbone_identity
from kmat.run.schema import read_result

ImageInput = str | Path | Image.Image | Tensor | np.ndarray
"""One image to predict: a file path, a PIL image, or a pixel array (:func:`kmat.data.images.image_of`)."""


@dataclass
class Prediction:
    path: str  # the file's path, or ``<image I>`` (I: its position) for an image given in memory
    label: str
    probabilities: dict[str, float]


def image_items(images: ImageInput | Sequence[ImageInput]) -> list[tuple[str, ImageInput]]:
    """``(name, image)`` of each image: one image, or a sequence of them; a 4-D array
    ``(N, C, H, W)`` is N images. A path is named by itself, any other image ``<image I>``."""
    if isinstance(images, str | Path | Image.Image | Tensor | np.ndarray):
        images = [images]
    out: list[tuple[str, ImageInput]] = []
    for item in images:
        if isinstance(item, Tensor | np.ndarray) and item.ndim == 4:
            out += [(f"<image {len(out)}>", one) for one in item]
        elif isinstance(item, str | Path):
            out.append((str(item), item))
        else:
            out.append((f"<image {len(out)}>", item))
    return out


def collect_images(inputs: list[str | Path]) -> list[Path]:
    """Image files given directly or found (recursively, sorted) in the given folders."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise ImageError(f"{p}: no such image file or folder")
    if not out:
        raise ImageError(f"no images found in {[str(i) for i in inputs]}")
    return out


def load_run(run_dir: str | Path) -> tuple[dict, dict[str, Tensor]]:
    """``(result, class_embeddings)`` of a finished run folder.

    Embeddings whose bytes do not match their recorded checksum, or that hold non-finite values,
    are refused (:class:`CheckpointError`); a file written before checksums existed is read unverified.
    """
    layout = RunLayout.of(run_dir)
    if not layout.exists():
        raise CheckpointError(
            f"{layout.folder}: no {layout.result.name} (is this a finished kmat train run?)"
        )
    result = dict(read_result(layout.result))
    return result, load_embeddings(layout.embeddings)


def deployment(
    result: dict, embeddings: dict[str, Tensor], head: dict[str, Tensor], backbone: Backbone
) -> tuple[type[Method], Deployment]:
    """The run's method class and what it classifies new images with (:class:`Deployment`)."""
    config = result["config"]
    name = str(result["method"])
    if name in available_methods():
        cls = get_method(name)
        method_config = resolve_config(cls.Config, dict(config.get("method_config", {})))
    elif head:
        raise CheckpointError(
            f"the run's method {name!r} is not registered here, and it classifies with more than class "
            f"embeddings ({RunLayout(Path('.')).head.name}): import the module that registers it "
            "(kmat.methods.register, or a 'kmat.methods' entry point) before predicting"
        )
    else:  # a user's method, registered elsewhere: its class embeddings are all it needs
        cls, method_config = Method, None
    scale = config.get("method_config", {}).get("logit_scale") or backbone.logit_scale
    display = config.get("modality_display_names") or {}
    dep = Deployment(
        backbone=backbone,
        classnames=list(config.get("classnames") or [c.replace("_", " ") for c in config["classes"]]),
        modality_names=[display.get("high", "high-end image"), display.get("low", "low-end image")],
        config=method_config,
        embeddings=embeddings,
        head=head,
        logit_scale=float(scale),
    )
    return cls, dep


@dataclass
class BadImage:
    """An image that could not be predicted, and why (the reason does not repeat the path)."""

    path: str
    reason: str


@dataclass
class PredictionReport:
    predictions: list[Prediction]
    bad: list[BadImage] = field(default_factory=list)
    probabilities: Tensor | None = None  # (len(predictions), classes) float32, unrounded, on the CPU
    classes: list[str] = field(default_factory=list)


def _reason(err: ImageError, path: Path | str) -> str:
    text = str(err).removeprefix(f"{path}: ").removeprefix(f"{Path(path)}: ")
    return " ".join(text.split())  # one line


def bad_images_error(bad: list[BadImage], total: int) -> ImageError:
    """One error naming every bad image (one line)."""
    listed = "; ".join(f"{b.path} ({b.reason})" for b in bad)
    return ImageError(f"{len(bad)} of {total} image(s) cannot be used: {listed}")


def predict_images(
    run_dir: str | Path,
    images: ImageInput | Sequence[ImageInput],
    role: str = "low",
    backbone: Backbone | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    loaded: tuple[dict, dict[str, Tensor]] | None = None,
    backbone_spec: str | None = None,
    allow_backbone_mismatch: bool = False,
) -> list[Prediction]:
    """Class probabilities of ``images`` (see :func:`predict_report`); any unusable image is an
    :class:`ImageError` naming every one."""
    return predict_report(
        run_dir,
        images,
        role=role,
        backbone=backbone,
        device=device,
        batch_size=batch_size,
        loaded=loaded,
        backbone_spec=backbone_spec,
        allow_backbone_mismatch=allow_backbone_mismatch,
        strict=True,
    ).predictions


@torch.no_grad()
def predict_report(
    run_dir: str | Path,
    images: ImageInput | Sequence[ImageInput],
    role: str = "low",
    backbone: Backbone | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    loaded: tuple[dict, dict[str, Tensor]] | None = None,
    backbone_spec: str | None = None,
    allow_backbone_mismatch: bool = False,
    strict: bool = False,
    head: dict[str, Tensor] | None = None,
) -> PredictionReport:
    """Class probabilities of ``images`` with the run's prompts for modality ``role`` ("high"/"low").

    ``images``: file paths, PIL images or image tensors (:func:`image_items`), alone or in a list.

    Images are encoded at the run's precision. ``loaded``: :func:`load_run`'s answer, if already read;
    ``head``: the run's :func:`~kmat.run.artifacts.load_head`, if already read.
    ``backbone_spec`` loads the backbone from elsewhere (a moved model folder); its weights must be
    those the run was trained with unless ``allow_backbone_mismatch``.

    An image that cannot be used (missing, corrupt, truncated, empty, not an image, non-finite
    pixels: :func:`kmat.data.images.load_image`) is skipped and listed in the report's ``bad``;
    with ``strict`` any such image is an :class:`ImageError` naming every one (all images are read,
    none is encoded after the first bad one).
    """
    if role not in ("high", "low"):
        raise ConfigError(f"modality must be 'high' or 'low', got {role!r}")
    result, emb = loaded if loaded is not None else load_run(run_dir)
    config = result["config"]
    classes: list[str] = config["classes"]
    head = load_head(run_dir) if head is None else head
    if backbone is None:
        backbone = (
            load_backbone(backbone_spec, device=resolve_device(device))
            if backbone_spec
            else load_recorded_backbone(
                config["backbone"], Path(run_dir) / "result.json", resolve_device(device)
            )
        )
    check_backbone_identity(
        backbone, config.get("backbone_identity"), Path(run_dir) / "result.json", allow_backbone_mismatch
    )
    backbone.set_precision(config.get("precision", "fp32"))  # as the run encoded its test images
    if emb[role].shape[-1] != backbone.output_dim:
        raise BackboneError(
            f"{run_dir}: the run's class embeddings are {emb[role].shape[-1]}-dimensional but this backbone's "
            f"image features are {backbone.output_dim}-dimensional (another architecture); predict with "
            "the backbone the run was trained with (--backbone)"
        )
    cls, dep = deployment(result, emb, head, backbone)
    batch_size = batch_size or encode_batch_size(backbone.device)
    items = image_items(images)
    report = PredictionReport([], classes=list(classes))
    rows: list[Tensor] = []
    for i in range(0, len(items), batch_size):
        chunk: list[str] = []
        batch: list[Tensor] = []
        for name, item in items[i : i + batch_size]:
            try:
                img = image_of(item, name)
                batch.append(test_transform(img, backbone.image_size, backbone.mean, backbone.std))
            except ImageError as err:
                report.bad.append(BadImage(name, _reason(err, name)))
                continue
            chunk.append(name)
        if not batch or (strict and report.bad):  # strict: go on reading only, to name every bad image
            continue
        feats = backbone.encode_images(torch.stack(batch))
        try:
            logits = cls.deployed_logits(dep, feats, role)
        except KeyError as err:
            raise CheckpointError(
                f"{run_dir}: the run's head lacks {err} (head.safetensors missing or incomplete); "
                "train the run again to write it"
            ) from None
        probs = torch.softmax(logits.float(), dim=-1).cpu()
        rows.append(probs)
        for name, row in zip(chunk, probs, strict=True):
            report.predictions.append(
                Prediction(
                    name,
                    classes[int(row.argmax())],
                    {c: round(float(v), 6) for c, v in zip(classes, row, strict=True)},
                )
            )
    if strict and report.bad:
        raise bad_images_error(report.bad, len(items))
    report.probabilities = torch.cat(rows) if rows else torch.zeros(0, len(classes))
    return report
