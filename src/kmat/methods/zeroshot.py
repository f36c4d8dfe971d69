"""Zero-shot BiomedCLIP (docs/methods.md, "Zero-shot BiomedCLIP"): nothing is learned.

- ``zeroshot``: ``t_c = norm(encode_text("a photo of a {classname}."))``, the same for both modalities.
- ``zeroshot_desc`` (choice, reported separately): ``t_c^m = norm(mean_k norm(g(d_{c,k}^m)))``, the
  mean embedding of the class's descriptions written for the test modality m.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor

from kmat.methods import register
from kmat.methods.base import Method, MethodContext
from kmat.methods.config import MethodConfig, option

C = TypeVar("C", bound=MethodConfig)


@dataclass
class NoTrainingConfig(MethodConfig):
    """Nothing is trained: the recipe fields exist only so that every method has them."""

    epochs: int = 0
    batch_size: int = 1
    lr: float = 0.0


@dataclass
class ZeroShotConfig(NoTrainingConfig):
    template: str = option("a photo of a {classname}.", "hand-written prompt; {classname} is replaced")


class FrozenMethod(Method[C]):
    """A method with nothing to learn: fixed class embeddings ``self._t`` per modality role."""

    trains = False
    _t: dict[str, Tensor]

    def loss(self, feats: Tensor, labels: Tensor) -> dict[str, Tensor]:
        raise RuntimeError(f"{self.name} has nothing to train")

    @torch.no_grad()
    def class_embeddings(self) -> dict[str, Tensor]:
        return dict(self._t)


@register
class ZeroShot(FrozenMethod[ZeroShotConfig]):
    name = "zeroshot"
    Config = ZeroShotConfig

    def __init__(self, ctx: MethodContext, cfg: ZeroShotConfig) -> None:
        super().__init__(ctx, cfg)
        t = ctx.zeroshot_embeddings(cfg.template)
        self._t = {"high": t, "low": t}


@register
class ZeroShotDescriptions(FrozenMethod[NoTrainingConfig]):
    name = "zeroshot_desc"
    Config = NoTrainingConfig

    def __init__(self, ctx: MethodContext, cfg: NoTrainingConfig) -> None:
        super().__init__(ctx, cfg)
        t = ctx.prototypes()
        self._t = {"high": t[0], "low": t[1]}
