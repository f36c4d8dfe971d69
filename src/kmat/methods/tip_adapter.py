"""Tip-Adapter (Zhang et al., "Tip-Adapter: Training-free Adaption of CLIP for Few-shot
Classification", ECCV 2022) on BiomedCLIP (docs/methods.md, "Tip-Adapter").

A training-free key-value cache of the few-shot **high-end** shots: keys ``K`` (N, D), their
L2-normalised image features, values ``L`` (N, C), their one-hot labels. A test feature ``f``::

    A      = f K^T                                 (cosine affinities, (B, N))
    logits = s * f T^T + alpha * exp(-beta (1 - A)) L

with ``T`` the frozen zero-shot text embeddings of "a photo of a {classname}." (one template, the
same for both modalities, as CoOp's prompt), so a low-end image is classified against the
high-end cache. The cache is built in :meth:`fit` from the training view(s) (``cache_views`` views,
averaged and re-normalised, as the paper averages augmented epochs; without augmentation every view
is the plain one, so the cache is the shots' test-transform features; with ``--augment``, view 0 is
the first random crop). alpha and beta are then searched on the **high-end** validation split, as
the paper and BiomedCoOp's trainer do, over the grid ``0.1 + i (50 - 0.1) / 200``, i = 0..199, for
each (beta outer, alpha inner; the first best accuracy is kept); without a validation split (or
with ``search = False``) they keep their initial values 1 and 1. :meth:`fit` records them.

Values from BiomedCoOp (Koleilat et al., CVPR 2025) ``configs/trainers/TiP_Adapter/few_shot.yaml``
and its Tip-Adapter trainer: ``init_beta: 1``, ``init_alpha: 1``, ``search_hp: True``,
``search_scale: [50, 50]``, ``search_step: [200, 200]``, ``augment_epoch: 1``. The trainer scales
the zero-shot logits by a fixed 100; kmat uses the run's logit scale ``s`` (the backbone's
``exp(logit_scale)``; set ``logit_scale`` to 100 for the trainer's value).

The cache (``cache_keys``, ``cache_values``) and the chosen ``alpha``, ``beta`` are buffers, saved
as the run's head. Before :meth:`fit` (never in a run) the cache holds the C zero-shot text
embeddings with identity values. ``tip_adapter_f`` (:mod:`kmat.methods.tip_adapter_f`) learns the keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kmat.methods import register
from kmat.methods.base import Deployment, Method, MethodConfig, MethodContext, TrainView
from kmat.methods.config import option
from kmat.methods.zeroshot import NoTrainingConfig

TIP_SOURCE = (
    "BiomedCoOp (Koleilat et al., CVPR 2025) configs/trainers/TiP_Adapter/few_shot.yaml and its trainer"
)


@dataclass
class TipOptions:
    """Tip-Adapter's own options (mixed into the configs of both Tip-Adapter methods)."""

    init_alpha: float = option(1.0, f"alpha before (or without) the search ({TIP_SOURCE}: init_alpha)", min=0)
    init_beta: float = option(1.0, f"beta before (or without) the search ({TIP_SOURCE}: init_beta)", min=0)
    search: bool = option(
        True, f"search alpha and beta on the few-shot val subset (high-end) ({TIP_SOURCE}: search_hp)"
    )
    search_scale: float = option(
        50.0, f"largest value of the search grids ({TIP_SOURCE}: search_scale)", min=0.1
    )
    search_step: int = option(200, f"values per search grid ({TIP_SOURCE}: search_step)", min=1)
    cache_views: int = option(
        1, f"training views averaged into the cache keys ({TIP_SOURCE}: augment_epoch)", min=1
    )
    template: str = option("a photo of a {classname}.", "prompt of the zero-shot text embeddings T")


@dataclass
class TipAdapterConfig(NoTrainingConfig, TipOptions):
    """Training-free Tip-Adapter."""

    unused = frozenset(
        {"epochs", "batch_size", "lr", "momentum", "weight_decay", "warmup_epochs", "warmup_lr"}
    )
    unused_why = "training-free: a cache of the shots, alpha and beta searched on the few-shot val subset"


def tip_logits(
    feats: Tensor,
    text: Tensor,
    keys: Tensor,
    values: Tensor,
    alpha: float | Tensor,
    beta: float | Tensor,
    scale: float,
) -> Tensor:
    """``s * f T^T + alpha * exp(-beta (1 - f K^T)) L``."""
    affinity = feats @ keys.T
    return scale * feats @ text.T + alpha * torch.exp(-beta * (1.0 - affinity)) @ values


def search_grid(scale: float, steps: int) -> list[float]:
    """``[0.1 + i (scale - 0.1) / steps for i in range(steps)]`` (the Tip-Adapter search grid)."""
    return [0.1 + i * (scale - 0.1) / steps for i in range(steps)]


@torch.no_grad()
def search_alpha_beta(
    feats: Tensor,
    labels: Tensor,
    text: Tensor,
    keys: Tensor,
    values: Tensor,
    scale: float,
    grid_scale: float,
    steps: int,
) -> tuple[float, float, float]:
    """``(alpha, beta, val accuracy %)`` of the best validation accuracy over the grids, beta outer and
    alpha inner, the first best kept (strictly better replaces it)."""
    grid = search_grid(grid_scale, steps)
    alphas = torch.tensor(grid, dtype=feats.dtype, device=feats.device)
    zs = scale * feats @ text.T  # (B, C)
    affinity = feats @ keys.T
    labels = labels.to(feats.device)
    best = (-1.0, grid[0], grid[0])
    for beta in grid:
        cache = torch.exp(-beta * (1.0 - affinity)) @ values  # (B, C)
        z = zs[None] + alphas[:, None, None] * cache[None]  # (A, B, C)
        acc = (z.argmax(dim=-1) == labels[None]).float().mean(dim=1) * 100  # (A,)
        i = int(acc.argmax())  # the first maximum: the smallest alpha
        if float(acc[i]) > best[0]:
            best = (float(acc[i]), grid[i], beta)
    return best[1], best[2], best[0]


class TipAdapterBase(Method[Any]):
    """The cache, its logits, its head and its search; ``tip_adapter`` and ``tip_adapter_f``."""

    text: Tensor
    cache_values: Tensor
    cache_keys: Tensor
    alpha: Tensor
    beta: Tensor
    learn_keys = False

    def __init__(self, ctx: MethodContext, cfg: Any) -> None:
        super().__init__(ctx, cfg)
        t = ctx.zeroshot_embeddings(cfg.template)
        self.register_buffer("text", t.clone())
        self.register_buffer("cache_values", torch.eye(t.shape[0], device=t.device))
        self._set_keys(t.clone())
        self.register_buffer("alpha", torch.tensor(float(cfg.init_alpha), device=t.device))
        self.register_buffer("beta", torch.tensor(float(cfg.init_beta), device=t.device))

    def _set_keys(self, keys: Tensor) -> None:
        if self.learn_keys:
            self.cache_keys = nn.Parameter(keys)
        elif "cache_keys" in self._buffers:
            self.cache_keys = keys
        else:
            self.register_buffer("cache_keys", keys)

    @classmethod
    def views_needed(cls, cfg: MethodConfig, augment: bool) -> int:
        n = super().views_needed(cfg, augment)
        return max(n, int(getattr(cfg, "cache_views", 1))) if augment else n

    @torch.no_grad()
    def build_cache(self, train: TrainView) -> int:
        """Keys = ``norm(mean_v f^(v))`` over the first ``cache_views`` views, values = one-hot labels."""
        views = [train(v) for v in range(self.cfg.cache_views)]
        labels = views[0][1]
        keys = F.normalize(torch.stack([f.float() for f, _ in views]).mean(dim=0), dim=-1)
        c = self.text.shape[0]
        self._set_keys(keys.to(self.text.device))
        self.cache_values = F.one_hot(labels.long(), c).float().to(self.text.device)
        return len(views)

    def search(self, val: tuple[Tensor, Tensor] | None) -> dict[str, Any]:
        """Set alpha and beta from the validation search (or keep them); what was chosen."""
        cfg = self.cfg
        if not cfg.search or val is None or len(val[1]) == 0:
            return {"alpha": float(self.alpha), "beta": float(self.beta), "searched": False}
        feats = val[0].to(self.text).float()
        alpha, beta, acc = search_alpha_beta(
            feats,
            val[1],
            self.text,
            self.cache_keys.detach(),
            self.cache_values,
            self.logit_scale,
            cfg.search_scale,
            cfg.search_step,
        )
        self.alpha.fill_(alpha)
        self.beta.fill_(beta)
        return {"alpha": alpha, "beta": beta, "val_acc": acc, "searched": True}

    def load_head(self, head: dict[str, Tensor]) -> None:
        """A saved cache has the run's number of shots: resize the cache to it, then restore."""
        if "cache_keys" in head and "cache_values" in head:
            with torch.no_grad():
                self._set_keys(torch.empty_like(head["cache_keys"], device=self.text.device))
                self.cache_values = torch.empty_like(head["cache_values"], device=self.text.device)
        super().load_head(head)

    def logits(self, feats: Tensor, role: str) -> Tensor:
        """``s * f T^T + alpha * exp(-beta (1 - f K^T)) L`` (both roles: the same text and cache)."""
        return tip_logits(
            feats.to(self.text),
            self.text,
            self.cache_keys,
            self.cache_values,
            self.alpha,
            self.beta,
            self.logit_scale,
        )

    @torch.no_grad()
    def predict_logits(self, feats: Tensor, role: str, batch_size: int = 1024) -> Tensor:
        chunks = [
            self.logits(feats[i : i + batch_size], role).cpu() for i in range(0, len(feats), batch_size)
        ]
        return torch.cat(chunks) if chunks else torch.empty(0, self.text.shape[0])

    @torch.no_grad()
    def class_embeddings(self) -> dict[str, Tensor]:
        """The zero-shot text embeddings T (the same for both roles); the cache is the head."""
        return {"high": self.text, "low": self.text}

    def head(self) -> dict[str, Tensor]:
        """``cache_keys`` (N, D), ``cache_values`` (N, C), ``alpha``, ``beta``, and ``text`` (T)."""
        return {
            "cache_keys": self.cache_keys.detach(),
            "cache_values": self.cache_values,
            "alpha": self.alpha,
            "beta": self.beta,
            "text": self.text,
        }

    @classmethod
    def deployed_logits(cls, dep: Deployment, feats: Tensor, role: str) -> Tensor:
        """The Tip-Adapter logits from the saved cache, text embeddings, alpha and beta."""
        h = {k: v.to(feats.device, feats.dtype) for k, v in dep.head.items()}
        return tip_logits(
            feats, h["text"], h["cache_keys"], h["cache_values"], h["alpha"], h["beta"], dep.logit_scale
        )


@register
class TipAdapter(TipAdapterBase):
    """Training-free Tip-Adapter: the cache is built and alpha, beta searched in :meth:`fit`."""

    name = "tip_adapter"
    Config = TipAdapterConfig
    trains = False

    def loss(self, feats: Tensor, labels: Tensor) -> dict[str, Tensor]:
        raise RuntimeError("tip_adapter is training-free (its cache is built in fit)")

    def fit(self, train: TrainView, val: tuple[Tensor, Tensor] | None) -> dict[str, Any]:
        """Build the cache from the shots, then search alpha and beta on the few-shot val subset."""
        views = self.build_cache(train)
        return {"cache_size": int(self.cache_keys.shape[0]), "cache_views": views, **self.search(val)}
