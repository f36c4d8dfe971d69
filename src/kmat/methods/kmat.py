"""K-MaT: Knowledge-Anchored Manifold Transport (Zeng & Albarqouni; docs/methods.md, "K-MaT").

``L = L_CE + lambda_1 * L_anchor + lambda_2 * L_FGW`` with

- ``L_CE = CE(s * f . t^H, y)`` on high-end images with the high-end prompts;
- ``L_anchor = mean_(i,m) || t_i^m - tbar_i^m ||_2`` (squared optional), ``tbar`` the normalised
  mean embedding of the class's descriptions in modality m (both modalities anchored);
- ``L_FGW`` the entropic FGW loss of :func:`kmat.ot.fgw_loss` between ``t^H`` (detached) and ``t^L``:
  ``(1 - alpha) <M, T*> + alpha * sum (C1 - C2)^2 T* T*``, by default ``alpha = 0.9`` (the paper's
  trade-off 0.1 read as the weight of the feature term; ``alpha = 0.1`` is the other reading).

Besides the loss terms, ``loss`` reports (detached, averaged per epoch into the run's history) the
FGW diagnostics of :meth:`kmat.ot.FGWTerms.diagnostics`, ``dist_hl = mean_i ||t_i^H - t_i^L||``,
so that a low-end classifier collapsing onto the high-end one shows in ``result.json``, and (with the
anchor) ``cos_anchor_m = mean_i cos(t_i^m, tbar_i^m)``, so that prompts that have become the
description prototypes show too.

Prompts are :class:`kmat.prompts.FactorisedPrompt` (shared, MSC, CSC context). A high-end image is
classified with ``t^H``, a low-end image with ``t^L``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor

from kmat.errors import DescriptionsMissingError
from kmat.methods import register
from kmat.methods.base import Method, MethodContext, cross_entropy
from kmat.methods.config import MethodConfig, option
from kmat.ot import DEFAULT_ALPHA, Metric, fgw_terms
from kmat.prompts import FactorisedPrompt


@dataclass
class KMaTConfig(MethodConfig):
    """K-MaT defaults (paper Sec. 3.1; lambda_1 = lambda_2 = 1.0 is a choice, tune on high-end val)."""

    epochs: int = 50
    batch_size: int = 4
    lr: float = 0.0025
    n_ctx: int = option(4, "learnable context vectors per prompt part (shared, MSC, CSC)", min=1)
    csc: bool = option(True, "class-specific context V_i^m")
    msc: bool = option(True, "modality-specific context V^m")
    anchor: bool = option(True, "use the space-anchoring term L_anchor")
    fgw: bool = option(True, "use the manifold-alignment term L_FGW")
    lambda_anchor: float = option(1.0, "weight lambda_1 of L_anchor (0 turns it off)", min=0)
    lambda_fgw: float = option(1.0, "weight lambda_2 of L_FGW (0 turns it off)", min=0)
    anchor_squared: bool = option(False, "squared distances in L_anchor")
    alpha: float = option(
        DEFAULT_ALPHA,
        "FGW structure weight (POT's alpha): L_FGW = (1 - alpha) <M, T> + alpha GW; 0.9 reads the paper's "
        "trade-off 0.1 as the feature weight, 0.1 gives the other reading",
        min=0,
        max=1,
    )
    epsilon: float = option(0.1, "FGW entropic regularisation", min=0, min_exclusive=True)
    sinkhorn_max_iter: int = option(100, "Sinkhorn iterations per projection (cap)", min=1)
    fgw_outer_max_iter: int = option(50, "FGW projected-gradient iterations (cap; converges in ~11)", min=1)
    fgw_metric: str = option(
        "euclidean", "cost between embeddings", choices=("euclidean", "sqeuclidean", "cosine")
    )
    template: str = option(
        "{classname} {modality}.", "text after the context; {classname}, {modality} replaced"
    )
    init_std: float = option(0.02, "std of the context initialisation N(0, std)", min=0)


def anchor_loss(t: Tensor, prototypes: Tensor, squared: bool = False) -> Tensor:
    """Space anchoring ``L_anchor = mean_(i,m) || t_i^m - tbar_i^m ||_2`` (``||.||_2^2`` if squared).

    ``t`` and ``prototypes`` are (n_mod, C, D); the mean runs over every (modality, class) pair.
    """
    diff = t - prototypes.to(t.dtype)
    sq = (diff * diff).sum(dim=-1)
    return sq.mean() if squared else torch.sqrt(sq + 1e-12).mean()


@register
class KMaT(Method[KMaTConfig]):
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
            try:
                ctx.prototypes()  # validate and encode descriptions up front, not mid-training
            except DescriptionsMissingError as err:
                raise DescriptionsMissingError(
                    f"{err}; or turn K-MaT's anchor term off (lambda_anchor = 0), which needs none",
                    field="lambda_anchor",
                ) from err

    def loss(self, feats: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """``L = L_CE + lambda_1 * L_anchor + lambda_2 * L_FGW`` (see the module docstring)."""
        t = self.prompt()  # (2, C, D): high, low
        logits = self.logit_scale * feats.to(t.device) @ t[0].T
        l_ce = cross_entropy(logits, labels)
        total = l_ce
        terms = {"ce": l_ce}
        if self.use_anchor:
            prototypes = self.ctx.prototypes()
            l_anchor = anchor_loss(t, prototypes, self.cfg.anchor_squared)
            total = total + self.cfg.lambda_anchor * l_anchor
            terms["anchor"] = l_anchor
            # mean_i cos(t_i^m, tbar_i^m): 1 means the prompts of modality m are the description
            # prototypes (the low-end prompts, which no image trains, get there when L_anchor dominates)
            cos = (t.detach() * prototypes.to(t.dtype)).sum(dim=-1).mean(dim=-1)
            terms["cos_anchor_high"], terms["cos_anchor_low"] = cos[0], cos[1]
        if self.use_fgw:
            fgw = fgw_terms(
                t[0],
                t[1],
                alpha=self.cfg.alpha,
                epsilon=self.cfg.epsilon,
                max_iter=self.cfg.sinkhorn_max_iter,
                metric=cast(Metric, self.cfg.fgw_metric),  # checked against Metric's choices
                outer_max_iter=self.cfg.fgw_outer_max_iter,
            )
            total = total + self.cfg.lambda_fgw * fgw.loss
            terms["fgw"] = fgw.loss
            terms.update(fgw.diagnostics())
        terms["dist_hl"] = (t[0] - t[1]).detach().norm(dim=-1).mean()  # mean_i ||t_i^H - t_i^L||
        terms["total"] = total
        return terms

    @torch.no_grad()
    def class_embeddings(self) -> dict[str, Tensor]:
        t = self.prompt()
        return {"high": t[0], "low": t[1]}
