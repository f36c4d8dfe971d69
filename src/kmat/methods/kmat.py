"""K-MaT: Knowledge-Anchored Manifold Transport (Zeng & Albarqouni; METHODS.md, "K-MaT").

``L = L_CE + lambda_1 * L_anchor + lambda_2 * L_FGW`` with

- ``L_CE = CE(s * f . t^H, y)`` on high-end images with the high-end prompts;
- ``L_anchor = mean_(i,m) || t_i^m - tbar_i^m ||_2`` (squared optional), ``tbar`` the normalised
  mean embedding of the class's descriptions in modality m (both modalities anchored);
- ``L_FGW`` the entropic FGW loss of :func:`kmat.ot.fgw_loss` between ``t^H`` (detached) and ``t^L``.

Prompts are :class:`kmat.prompts.FactorisedPrompt` (shared, MSC, CSC context). A high-end image is
classified with ``t^H``, a low-end image with ``t^L``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from kmat.methods import register
from kmat.methods.base import Method, MethodContext, cross_entropy
from kmat.ot import fgw_loss
from kmat.prompts import FactorisedPrompt


@dataclass
class KMaTConfig:
    """K-MaT defaults (paper Sec. 3.1; lambda_1 = lambda_2 = 1.0 is a choice, tune on high-end val)."""

    epochs: int = 50
    batch_size: int = 4
    lr: float = 0.0025
    n_ctx: int = 4
    csc: bool = True
    msc: bool = True
    anchor: bool = True
    fgw: bool = True
    lambda_anchor: float = 1.0
    lambda_fgw: float = 1.0
    anchor_squared: bool = False
    alpha: float = 0.1
    epsilon: float = 0.1
    sinkhorn_max_iter: int = 100
    fgw_outer_max_iter: int = 50  # projected-gradient iterations (converges in ~11)
    fgw_metric: str = "euclidean"
    template: str = "{classname} {modality}."
    init_std: float = 0.02
    logit_scale: float | None = None  # None: the backbone's exp(logit_scale)


def anchor_loss(t: Tensor, prototypes: Tensor, squared: bool = False) -> Tensor:
    """Space anchoring ``L_anchor = mean_(i,m) || t_i^m - tbar_i^m ||_2`` (``||.||_2^2`` if squared).

    ``t`` and ``prototypes`` are (n_mod, C, D); the mean runs over every (modality, class) pair.
    """
    diff = t - prototypes.to(t.dtype)
    sq = (diff * diff).sum(dim=-1)
    return sq.mean() if squared else torch.sqrt(sq + 1e-12).mean()


@register
class KMaT(Method):
    name = "kmat"
    Config = KMaTConfig

    def __init__(self, ctx: MethodContext, cfg: KMaTConfig) -> None:
        super().__init__(ctx, cfg)
        self.prompt = FactorisedPrompt(
            ctx.backbone,
            ctx.classnames,
            ctx.modality_names,
            n_ctx=cfg.n_ctx,
            csc=cfg.csc,
            msc=cfg.msc,
            template=cfg.template,
            init_std=cfg.init_std,
        )
        self.use_anchor = cfg.anchor and cfg.lambda_anchor > 0
        self.use_fgw = cfg.fgw and cfg.lambda_fgw > 0
        if self.use_anchor:
            ctx.prototypes()  # validate and encode descriptions up front, not mid-training

    def loss(self, feats: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        t = self.prompt()  # (2, C, D): high, low
        logits = self.logit_scale * feats.to(t.device) @ t[0].T
        l_ce = cross_entropy(logits, labels)
        total = l_ce
        terms = {"ce": float(l_ce.detach())}
        if self.use_anchor:
            l_anchor = anchor_loss(t, self.ctx.prototypes(), self.cfg.anchor_squared)
            total = total + self.cfg.lambda_anchor * l_anchor
            terms["anchor"] = float(l_anchor.detach())
        if self.use_fgw:
            l_fgw = fgw_loss(
                t[0],
                t[1],
                alpha=self.cfg.alpha,
                epsilon=self.cfg.epsilon,
                max_iter=self.cfg.sinkhorn_max_iter,
                metric=self.cfg.fgw_metric,
                outer_max_iter=self.cfg.fgw_outer_max_iter,
            )
            total = total + self.cfg.lambda_fgw * l_fgw
            terms["fgw"] = float(l_fgw.detach())
        terms["total"] = float(total.detach())
        return total, terms

    @torch.no_grad()
    def class_embeddings(self) -> dict[str, Tensor]:
        t = self.prompt()
        return {"high": t[0], "low": t[1]}
