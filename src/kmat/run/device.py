"""The device a run uses, and how many images it encodes per batch there."""

from __future__ import annotations

import torch

from kmat.errors import DeviceError


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
        raise DeviceError(
            f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps", field="device"
        ) from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(
            f"unsupported device {device!r}: use auto, cpu, cuda, cuda:N or mps", field="device"
        )
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device cuda requested but no CUDA device is available", field="device")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceError(
            f"device {device}: there are {torch.cuda.device_count()} CUDA device(s) (cuda:0 ...)"
        )
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError("device mps requested but MPS is not available", field="device")
    return dev
