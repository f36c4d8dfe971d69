"""Deployment: classify new images with the prompts a run learned.

A run folder keeps the learned class embeddings of both modalities
(``class_embeddings.safetensors``) beside ``result.json``; predicting a low-end image is
``softmax(s * f . t^L)`` with the frozen image tower, and needs neither the training data nor the
task folder. (CoCoOp builds its prompts per image and is re-built from its checkpoint instead.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from kmat.backbone import Backbone, load_backbone
from kmat.data.images import IMAGE_SUFFIXES, load_image, test_transform
from kmat.errors import CheckpointError, ConfigError, ImageError
from kmat.methods import get_method
from kmat.run.device import encode_batch_size, resolve_device
from kmat.run.layout import RunLayout
from kmat.run.runner import check_backbone_identity
from kmat.run.schema import read_result
from kmat.utils.io import DamagedFileError, read_safetensors


@dataclass
class Prediction:
    path: str
    label: str
    probabilities: dict[str, float]


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


def load_embeddings(path: str | Path) -> dict[str, Tensor]:
    """A run's ``class_embeddings.safetensors`` (modality role -> class embeddings), verified."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; train the run again to write it")
    try:
        return read_safetensors(path)[0]
    except (OSError, DamagedFileError) as err:
        raise CheckpointError(
            f"{path}: damaged or unreadable ({err}); train the run again to rewrite it"
        ) from err


@torch.no_grad()
def predict_images(
    run_dir: str | Path,
    images: list[Path],
    role: str = "low",
    backbone: Backbone | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    loaded: tuple[dict, dict[str, Tensor]] | None = None,
    backbone_spec: str | None = None,
    allow_backbone_mismatch: bool = False,
) -> list[Prediction]:
    """Class probabilities of ``images`` with the run's prompts for modality ``role`` ("high"/"low").

    Images are encoded at the run's precision. ``loaded``: :func:`load_run`'s answer, if already read.
    ``backbone_spec`` loads the backbone from elsewhere (a moved model folder); its weights must be
    those the run was trained with unless ``allow_backbone_mismatch``.
    """
    if role not in ("high", "low"):
        raise ConfigError(f"modality must be 'high' or 'low', got {role!r}")
    result, emb = loaded if loaded is not None else load_run(run_dir)
    config = result["config"]
    classes: list[str] = config["classes"]
    if get_method(result["method"]).per_image_prompts:
        raise ConfigError(
            f"{result['method']} builds its prompts per image; use kmat evaluate on a task folder instead"
        )
    backbone = backbone or load_backbone(backbone_spec or config["backbone"], device=resolve_device(device))
    check_backbone_identity(
        backbone, config.get("backbone_identity"), Path(run_dir) / "result.json", allow_backbone_mismatch
    )
    backbone.set_precision(config.get("precision", "fp32"))  # as the run encoded its test images
    scale = config.get("method_config", {}).get("logit_scale") or backbone.logit_scale
    t = emb[role].to(backbone.device)
    batch_size = batch_size or encode_batch_size(backbone.device)
    preds: list[Prediction] = []
    for i in range(0, len(images), batch_size):
        chunk = images[i : i + batch_size]
        x = torch.stack(
            [test_transform(load_image(p), backbone.image_size, backbone.mean, backbone.std) for p in chunk]
        )
        probs = torch.softmax(scale * backbone.encode_images(x) @ t.T, dim=-1).cpu()
        for p, row in zip(chunk, probs, strict=True):
            preds.append(
                Prediction(
                    str(p),
                    classes[int(row.argmax())],
                    {c: round(float(v), 6) for c, v in zip(classes, row, strict=True)},
                )
            )
    return preds
