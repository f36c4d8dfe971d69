"""CoOp (Zhou et al., IJCV 2022) on BiomedCLIP (docs/methods.md, "CoOp").

Prompt ``[CLS] V_1..V_4 {classname}. [SEP]`` with one context shared by all classes, initialised
from the word embeddings of "a photo of a". Loss ``L_CE = CE(s * f . t, y)``. The same prompts
classify both modalities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor

from kmat.methods import register
from kmat.methods.base import Method, MethodContext, cross_entropy
from kmat.methods.config import MethodConfig, option
from kmat.prompts import SharedContextPrompt


@dataclass
class SharedPromptConfig(MethodConfig):
    """Settings every CoOp-family method has (a method's config subclasses it with its defaults)."""

    epochs: int = 100
    batch_size: int = 32
    lr: float = 0.002
    n_ctx: int = option(4, "learnable context vectors per prompt", min=1)
    init_words: str | None = option(
        "a photo of a", "words whose embeddings initialise the context (None: N(0, init_std))"
    )
    template: str = option("{classname}.", "text after the context; {classname} is replaced")
    init_std: float = option(0.02, "std of the random context initialisation", min=0)


C = TypeVar("C", bound=SharedPromptConfig)


@dataclass
class CoOpConfig(SharedPromptConfig):
    """CoOp's published BiomedCLIP recipe: batch 32, lr 0.002, 100 epochs."""


class SharedPromptMethod(Method[C]):
    """Base of the CoOp family: one shared context, the same prompts for both modalities."""

    def __init__(self, ctx: MethodContext, cfg: C) -> None:
        super().__init__(ctx, cfg)
        self.prompt = SharedContextPrompt(
            ctx.backbone,
            ctx.classnames,
            n_ctx=cfg.n_ctx,
            init_words=cfg.init_words,
            template=cfg.template,
            init_std=cfg.init_std,
        )

    def ce_logits(self, feats: Tensor) -> tuple[Tensor, Tensor]:
        """``(z, t)``: logits ``s * f . t`` of a batch and the class embeddings ``t`` (C, D)."""
        t = self.prompt()
        return self.logit_scale * feats.to(t.device) @ t.T, t

    @torch.no_grad()
    def class_embeddings(self) -> dict[str, Tensor]:
        t = self.prompt()
        return {"high": t, "low": t}


@register
class CoOp(SharedPromptMethod[CoOpConfig]):
    name = "coop"
    Config = CoOpConfig

    def loss(self, feats: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """``L = CE(s * f . t, y)``."""
        z, _ = self.ce_logits(feats)
        loss = cross_entropy(z, labels)
        return {"ce": loss, "total": loss}
