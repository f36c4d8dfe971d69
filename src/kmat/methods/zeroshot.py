"""Zero-shot BiomedCLIP (METHODS.md, "Zero-shot BiomedCLIP"): nothing is learned.

- ``zeroshot``: ``t_c = norm(encode_text("a photo of a {classname}."))``, the same for both modalities.
- ``zeroshot_desc`` (choice, reported separately): ``t_c^m = norm(mean_k norm(g(d_{c,k}^m)))``, the
  mean embedding of the class's descriptions written for the test modality m.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from kmat.methods import register
from kmat.methods.base import Method, MethodContext


@dataclass
class NoTrainingConfig:
    """Nothing is trained: the recipe fields exist only so that every method has them."""

    epochs: int = 0
    batch_size: int = 1
    lr: float = 0.0
    logit_scale: float | None = None


@dataclass
class ZeroShotConfig(NoTrainingConfig):
    template: str = "a photo of a {classname}."


@register
class ZeroShot(Method):
    name = "zeroshot"
    Config = ZeroShotConfig
    trains = False

    def __init__(self, ctx: MethodContext, cfg: ZeroShotConfig) -> None:
        super().__init__(ctx, cfg)
        self._t = ctx.zeroshot_embeddings(cfg.template)

    def loss(self, feats: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        raise RuntimeError("zero-shot has nothing to train")

    @torch.no_grad()
    def class_embeddings(self) -> dict[str, Tensor]:
        return {"high": self._t, "low": self._t}


@register
class ZeroShotDescriptions(ZeroShot):
    name = "zeroshot_desc"
    Config = NoTrainingConfig

    def __init__(self, ctx: MethodContext, cfg: NoTrainingConfig) -> None:
        Method.__init__(self, ctx, cfg)
        self._t = ctx.prototypes()

    @torch.no_grad()
    def class_embeddings(self) -> dict[str, Tensor]:
        return {"high": self._t[0], "low": self._t[1]}
