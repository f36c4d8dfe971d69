"""The one training loop for every method, and checkpoints of the learnable parameters.

Recipe (docs/methods.md, "Shared training recipe"): SGD (momentum 0.9, weight decay 5e-4); the first
``warmup_epochs`` at a constant ``warmup_lr`` (1e-5), then cosine from the base lr, stepped once per
epoch, as the official BiomedCLIP trainers schedule it (Dassl's constant warm-up in front of
``CosineAnnealingLR(T_max=E)``, measured on that scheduler; the lr never reaches 0)::

    lr(e) = warmup_lr                                                   for e < w
    lr(e) = lr * (1 + cos(pi * (e - w) / E)) / 2                        for e >= w

with ``E`` all epochs and ``w`` the warm-up epochs.

Steps per epoch ``= max(1, floor(N / batch))`` over a per-epoch permutation seeded by (seed, epoch).
Image features of epoch ``e`` come from ``train_features(e)`` (view ``e`` of every image).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from kmat.errors import CheckpointError, ConfigError, TaskError, TrainingDivergedError
from kmat.methods.base import Method
from kmat.methods.config import MethodConfig
from kmat.utils.io import atomic_save_safetensors, read_safetensors
from kmat.utils.progress import progress


def lr_at(recipe: MethodConfig, epoch: int) -> float:
    """The learning rate of ``epoch`` under the recipe (warm-up, then cosine; see module docstring)."""
    w = min(recipe.warmup_epochs, recipe.epochs)
    if epoch < w:
        return recipe.warmup_lr
    return recipe.lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - w) / max(1, recipe.epochs)))


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


def train(
    method: Method,
    train_features: Callable[[int], tuple[Tensor, Tensor]],
    recipe: MethodConfig,
    seed: int,
    show_progress: bool = True,
    on_epoch_end: Callable[[int], dict[str, float]] | None = None,
) -> list[dict]:
    """Train ``method`` in place under ``recipe`` (the method's config); returns, per epoch, the lr
    and the mean of every loss term ``method.loss`` returned, plus what ``on_epoch_end(epoch)``
    returns (e.g. the validation accuracy of the model at the end of that epoch; it must not
    change the model or draw random numbers)."""
    params = [p for p in method.parameters() if p.requires_grad]
    history: list[dict] = []
    if not method.trains or recipe.epochs <= 0:
        return history
    if not params:
        raise ConfigError(f"method {method.name!r} has no learnable parameters")
    opt = method.optimizer(params, recipe)  # SGD unless the method's published recipe says otherwise
    device = method.backbone.device
    bar = progress(
        total=recipe.epochs, desc=f"training {method.name}", unit="epoch", disable=not show_progress
    )
    for epoch in range(recipe.epochs):
        lr = lr_at(recipe, epoch)
        for g in opt.param_groups:
            g["lr"] = lr
        feats, labels = train_features(epoch)
        n = len(labels)
        if n == 0:
            raise TaskError("no training images")
        perm = epoch_permutation(n, seed, epoch)
        steps = max(1, n // recipe.batch_size)
        sums: dict[str, Tensor] = {}
        t0 = time.perf_counter()
        with method.backbone.text_dropout(method.text_dropout):
            for s in range(steps):
                idx = perm[s * recipe.batch_size : (s + 1) * recipe.batch_size]
                terms = method.loss(feats[idx].to(device), labels[idx].to(device))
                loss = terms["total"]
                if not torch.isfinite(loss):
                    shown = {k: float(v.detach()) for k, v in terms.items()}
                    raise TrainingDivergedError(
                        f"{method.name}: non-finite loss at epoch {epoch}, step {s}: {shown} "
                        f"(lr {lr:g}; a smaller learning rate may help)"
                    )
                opt.zero_grad(set_to_none=True)
                method.backward(terms)
                opt.step()
                for k, v in terms.items():
                    d = v.detach().double()
                    sums[k] = sums[k] + d if k in sums else d
        rec: dict = {"epoch": epoch, "lr": lr, "steps": steps, "seconds": time.perf_counter() - t0}
        rec.update({k: float(v) / steps for k, v in sums.items()})
        if on_epoch_end is not None:
            rec.update(on_epoch_end(epoch))
        history.append(rec)
        bar.set_postfix(loss=f"{rec.get('total', float('nan')):.4f}")
        bar.update(1)
    bar.close()
    return history


def save_checkpoint(method: Method, config: dict, path: str | Path) -> Path:
    """Learnable parameters (safetensors) with the resolved run config and the sha256 of the
    parameters' bytes in its metadata."""
    return atomic_save_safetensors(
        path, method.learnable_state(), metadata={"config": json.dumps(config), "method": method.name}
    )


def load_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict]:
    """``(state, config)`` of a checkpoint written by :func:`save_checkpoint`.

    A checkpoint whose bytes do not match its recorded checksum, or that holds non-finite values,
    is refused (:class:`CheckpointError`); one written before checksums existed is read unverified.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state, meta, _ = read_safetensors(path)
        config = json.loads(meta.get("config", "{}"))
    except (OSError, ValueError) as err:  # DamagedFileError, or metadata that is not JSON
        raise CheckpointError(
            f"{path}: damaged or not a kmat checkpoint ({err}); train the run again to rewrite it"
        ) from err
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: the checkpoint's configuration is not an object")
    return state, config
