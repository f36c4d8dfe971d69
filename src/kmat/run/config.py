"""Run configuration: what ``kmat train`` (or a script) asks for, saved with every run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from kmat import PRECISIONS
from kmat.backbone import DEFAULT_BACKBONE


@dataclass
class RunConfig:
    """One training-and-evaluation run.

    ``options`` overrides the method's defaults (its ``Config`` dataclass), e.g.
    ``{"epochs": 2, "lambda_fgw": 0.5}``; ``None`` values are ignored.
    """

    task: str
    out: str
    method: str = "kmat"
    data_root: str | None = None
    backbone: str = DEFAULT_BACKBONE
    shots: int = 16
    seed: int = 1
    device: str = "auto"
    precision: str = "fp32"
    feature_cache: bool = True
    augment: bool = True
    feature_batch_size: int | None = None  # None: encode_batch_size(device)
    min_descriptions: int = 1
    show_progress: bool = True
    options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> RunConfig:
        if self.shots < 0:
            raise ValueError(f"--shots must be >= 0 (0 = all training images), got {self.shots}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.feature_batch_size is not None and self.feature_batch_size < 1:
            raise ValueError("feature batch size must be >= 1")
        for k in ("epochs",):
            v = self.options.get(k)
            if v is not None and v < 0:
                raise ValueError(f"--{k} must be >= 0, got {v}")
        for k in ("batch_size",):
            v = self.options.get(k)
            if v is not None and v < 1:
                raise ValueError(f"--batch-size must be >= 1, got {v}")
        for k in ("lr", "lambda_anchor", "lambda_fgw"):
            v = self.options.get(k)
            if v is not None and v < 0:
                raise ValueError(f"--{k.replace('_', '-')} must be >= 0, got {v}")
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out"] = str(Path(self.out))
        return d


def encode_batch_size(device: torch.device) -> int:
    """Images per no-grad encoder batch: 16 on a CPU, 64 on an accelerator.

    On a CPU the image tower is compute-bound and larger batches only spill the caches (measured on
    2 cores: ViT-S/16 55 ms an image in batches of 16, 63 ms in 64; ViT-B/16 210 vs 223 ms); GPUs
    need large batches to be used at all.
    """
    return 16 if torch.device(device).type == "cpu" else 64


def resolve_device(device: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an unavailable device is a clear error."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}: use auto, cpu, cuda, cuda:N or mps")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but no CUDA device is available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(
            f"--device {device}: there are {torch.cuda.device_count()} CUDA device(s) (cuda:0 ...)"
        )
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("--device mps requested but MPS is not available")
    return dev
