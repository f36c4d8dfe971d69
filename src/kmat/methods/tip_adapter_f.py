"""Tip-Adapter-F (Zhang et al., "Tip-Adapter: Training-free Adaption of CLIP for Few-shot
Classification", ECCV 2022, Sec. 3.3) on BiomedCLIP (docs/methods.md, "Tip-Adapter-F").

Tip-Adapter (:mod:`kmat.methods.tip_adapter`) with the cache keys ``K`` a learnable parameter,
fine-tuned by the engine (values ``L`` and the text embeddings ``T`` stay frozen)::

    logits = s * f T^T + alpha * exp(-beta (1 - f K^T)) L          L_CE = CE(logits, y)

1. :meth:`fit` builds the cache from the high-end shots (``K`` = their features, ``L`` = one-hot
   labels) and starts from ``alpha = init_alpha``, ``beta = init_beta`` (1 and 1);
2. the engine fine-tunes ``K`` with cross-entropy on the shots;
3. :meth:`after_training` searches alpha and beta on the **high-end** validation split with the
   fine-tuned keys (the paper's protocol and BiomedCoOp's trainer: the same grid as Tip-Adapter)
   and records them in the run's ``fit``.

Recipe from BiomedCoOp (Koleilat et al., CVPR 2025) ``configs/trainers/TiP_Adapter/few_shot.yaml``
and its Tip-Adapter trainer (``finetune: True``): AdamW (eps 1e-4, PyTorch's default weight decay
0.01) at lr 0.001, 20 epochs, cosine schedule without warm-up (the trainer does not read the
config's ``WARMUP_EPOCH``), batch 32 (``FIXED_BATCH_SIZE`` of its ``main.py``). The optimiser comes
from :meth:`optimizer` (the loop's hook), the schedule from the loop (stepped once per epoch; the
trainer steps it once per batch). Not reproduced (documented): the trainer's search of the initial
alpha (``grid_search``: ten adapters fine-tuned for alpha = 0..9) and its keeping of the epoch with
the best validation accuracy; kmat evaluates the model after the last epoch, like every method.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from kmat.methods import register
from kmat.methods.base import TrainView, cross_entropy
from kmat.methods.config import MethodConfig, option
from kmat.methods.tip_adapter import TIP_SOURCE, TipAdapterBase, TipOptions


@dataclass
class TipAdapterFConfig(MethodConfig, TipOptions):
    """Tip-Adapter-F's published recipe (module docstring)."""

    epochs: int = 20  # TIP_SOURCE: train_epoch 20
    batch_size: int = 32  # BiomedCoOp main.py: FIXED_BATCH_SIZE 32
    lr: float = option(0.001, f"base learning rate of AdamW ({TIP_SOURCE}: lr 0.001)", min=0)
    unused = frozenset({"momentum"})
    unused_why = "Tip-Adapter-F trains with AdamW"
    weight_decay: float = option(
        0.01, "AdamW (decoupled) weight decay: AdamW's default in the trainer", min=0
    )
    warmup_epochs: int = 0  # the trainer has no warm-up
    adam_eps: float = option(1e-4, f"AdamW epsilon ({TIP_SOURCE})", min=0, min_exclusive=True)


@register
class TipAdapterF(TipAdapterBase):
    """Tip-Adapter with learnable cache keys, fine-tuned by the engine with AdamW."""

    name = "tip_adapter_f"
    Config = TipAdapterFConfig
    learn_keys = True

    def fit(self, train: TrainView, val: tuple[Tensor, Tensor] | None) -> dict[str, Any]:
        """Build the cache from the shots (the keys become the learnable parameter)."""
        views = self.build_cache(train)
        return {"cache_size": int(self.cache_keys.shape[0]), "cache_views": views}

    def loss(self, feats: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """``L = CE(s f T^T + alpha exp(-beta (1 - f K^T)) L, y)``."""
        ce = cross_entropy(self.logits(feats, "high"), labels)
        return {"ce": ce, "total": ce}

    def optimizer(self, params: Sequence[Tensor], recipe: MethodConfig) -> torch.optim.Optimizer:
        """AdamW (the published Tip-Adapter-F optimiser), eps ``adam_eps``."""
        return torch.optim.AdamW(
            params, lr=recipe.lr, eps=self.cfg.adam_eps, weight_decay=recipe.weight_decay
        )

    @torch.no_grad()
    def after_training(self, val: tuple[Tensor, Tensor] | None) -> dict[str, Any]:
        """Search alpha and beta on the few-shot val subset with the fine-tuned keys."""
        return self.search(val)
