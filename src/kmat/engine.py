"""The one training loop for every method, and checkpoints of the learnable parameters.

Recipe (METHODS.md, "Shared training recipe"): SGD (momentum 0.9, weight decay 5e-4); the first
``warmup_epochs`` at a constant ``warmup_lr`` (1e-5), then cosine from the base lr over the
remaining epochs, stepped once per epoch::

    lr(e) = warmup_lr                                                   for e < w
    lr(e) = lr * (1 + cos(pi * (e - w) / (E - w))) / 2                  for e >= w

Steps per epoch ``= max(1, floor(N / batch))`` over a per-epoch permutation seeded by (seed, epoch).
Image features of epoch ``e`` come from ``train_features(e)`` (view ``e`` of every image).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from kmat.errors import CheckpointError, ConfigError, TaskError
from kmat.methods.base import Method
from kmat.utils.io import atomic_save_safetensors
from kmat.utils.progress import progress


@dataclass
class Recipe:
    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 1
    warmup_lr: float = 1e-5

    def lr_at(self, epoch: int) -> float:
        w = min(self.warmup_epochs, self.epochs)
        if epoch < w:
            return self.warmup_lr
        span = max(1, self.epochs - w)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - w) / span))


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


def train(
    method: Method,
    train_features: Callable[[int], tuple[Tensor, Tensor]],
    recipe: Recipe,
    seed: int,
    show_progress: bool = True,
) -> list[dict]:
    """Train ``method`` in place; returns per-epoch mean loss terms and lr."""
    params = [p for p in method.parameters() if p.requires_grad]
    history: list[dict] = []
    if not method.trains or recipe.epochs <= 0:
        return history
    if not params:
        raise ConfigError(f"method {method.name!r} has no learnable parameters")
    opt = torch.optim.SGD(
        params, lr=recipe.lr_at(0), momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )
    device = method.backbone.device
    bar = progress(
        total=recipe.epochs, desc=f"training {method.name}", unit="epoch", disable=not show_progress
    )
    for epoch in range(recipe.epochs):
        lr = recipe.lr_at(epoch)
        for g in opt.param_groups:
            g["lr"] = lr
        feats, labels = train_features(epoch)
        n = len(labels)
        if n == 0:
            raise TaskError("no training images")
        perm = epoch_permutation(n, seed, epoch)
        steps = max(1, n // recipe.batch_size)
        sums: dict[str, float] = {}
        t0 = time.perf_counter()
        with method.backbone.text_dropout(method.text_dropout):
            for s in range(steps):
                idx = perm[s * recipe.batch_size : (s + 1) * recipe.batch_size]
                loss, terms = method.loss(feats[idx].to(device), labels[idx].to(device))
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss at epoch {epoch}, step {s}: {terms}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v
        rec = {"epoch": epoch, "lr": lr, "steps": steps, "seconds": time.perf_counter() - t0}
        rec.update({k: v / steps for k, v in sums.items()})
        history.append(rec)
        bar.set_postfix(loss=f"{rec.get('total', float('nan')):.4f}")
        bar.update(1)
    bar.close()
    return history


def save_checkpoint(method: Method, config: dict, path: str | Path) -> Path:
    """Learnable parameters (safetensors) with the resolved run config in its metadata."""
    return atomic_save_safetensors(
        path, method.learnable_state(), metadata={"config": json.dumps(config), "method": method.name}
    )


def load_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict]:
    """``(state, config)`` of a checkpoint written by :func:`save_checkpoint`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
        state = {k: fh.get_tensor(k).clone() for k in fh.keys()}  # not tied to the mapped file
    return state, json.loads(meta.get("config", "{}"))


def recipe_from(cfg: object) -> Recipe:
    """The recipe part of a method config (its ``epochs``, ``batch_size``, ``lr``)."""
    return Recipe(epochs=int(cfg.epochs), batch_size=int(cfg.batch_size), lr=float(cfg.lr))
