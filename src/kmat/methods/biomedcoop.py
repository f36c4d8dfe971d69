"""BiomedCoOp (Koleilat et al., CVPR 2025) on BiomedCLIP (docs/methods.md, "BiomedCoOp").

CoOp prompts plus LLM-description knowledge:

- bank ``T[c, k]``: the first 50 descriptions of class c (high-end modality: the one it trains
  on), encoded once and normalised;
- per batch, ``S_k = mean_b max_c s * f_b . T[c, k]`` (no grad); descriptions with
  ``|S_k - mean(S)| / std(S) <= tau`` (unbiased std) are kept, teacher ``T_hat_c = norm(mean_kept T[c, k])``;
- SCCM target ``T_bar_c = norm(mean_all T[c, k])``;
- ``L = CE(z, y) + lambda_S * mean((t - T_bar)^2) + lambda_K * sum KL(softmax(z_T) || softmax(z)) / (B * C)``
  with ``z = s * f . t`` and ``z_T = s * f . T_hat``.

The text tower's dropout is on while training (as in the published code). The same prompts
classify both modalities.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from kmat.methods import register
from kmat.methods.base import MethodContext, cross_entropy
from kmat.methods.config import option
from kmat.methods.coop import SharedPromptConfig, SharedPromptMethod
from kmat.methods.published import published_task_defaults


@dataclass
class BiomedCoOpConfig(SharedPromptConfig):
    batch_size: int = 4
    lr: float = 0.0025
    lambda_S: float = option(1.0, "weight of the SCCM term mean((t - T_bar)^2)", min=0)
    lambda_K: float = option(1.0, "weight of the KD term KL(softmax(z_T) || softmax(z))", min=0)
    tau: float = option(1.5, "z-score threshold of the description pruning", min=0)
    n_descriptions: int = option(50, "descriptions per class in the bank (the first N)", min=1)


def prune_descriptions(feats: Tensor, bank: Tensor, scale: float, tau: float) -> Tensor:
    """Boolean mask (K,) of the descriptions kept by the z-score rule on this batch.

    ``S_k = mean_b max_c scale * f_b . T[c, k]``; keep ``|S_k - mean(S)| / std(S) <= tau``
    (unbiased std; all kept when std is 0 or when the rule would keep none).
    """
    with torch.no_grad():
        sims = scale * torch.einsum("bd,ckd->bck", feats, bank)  # (B, C, K)
        S = sims.max(dim=1).values.mean(dim=0)  # (K,)
        std = S.std(unbiased=True) if S.numel() > 1 else torch.zeros((), device=S.device)
        if not torch.isfinite(std) or std == 0:
            return torch.ones_like(S, dtype=torch.bool)
        keep = (S - S.mean()).abs() / std <= tau
        return keep if keep.any() else torch.ones_like(keep)  # tau < 1 can drop all: keep the bank


def sccm_loss(t: Tensor, t_bar: Tensor) -> Tensor:
    """``mean((t - T_bar)^2)``, the elementwise mean over C x D."""
    return ((t - t_bar.to(t.dtype)) ** 2).mean()


def kd_loss(z: Tensor, z_teacher: Tensor) -> Tensor:
    """``sum_(b,c) KL(softmax(z_T) || softmax(z)) / (B * C)``."""
    b, c = z.shape
    return F.kl_div(F.log_softmax(z, dim=-1), F.softmax(z_teacher, dim=-1), reduction="sum") / (b * c)


@register
class BiomedCoOp(SharedPromptMethod[BiomedCoOpConfig]):
    name = "biomedcoop"
    Config = BiomedCoOpConfig
    text_dropout = True
    bank: Tensor  # (C, K, D) normalised description embeddings (a buffer)
    t_bar: Tensor  # (C, D) SCCM target (a buffer)
    task_defaults = published_task_defaults(
        dermamnist={"lambda_S": 5.0, "lambda_K": 20.0, "tau": 1.5},
        covid={"lambda_S": 0.5, "lambda_K": 2.0, "tau": 1.5},
    )

    def __init__(self, ctx: MethodContext, cfg: BiomedCoOpConfig) -> None:
        super().__init__(ctx, cfg)
        descs = ctx.descriptions()[ctx.require_task().high.name]
        k = min(cfg.n_descriptions, *(len(descs[c]) for c in ctx.require_task().classes))
        if k < cfg.n_descriptions:
            warnings.warn(
                f"BiomedCoOp: only {k} descriptions per class available (wants {cfg.n_descriptions})",
                stacklevel=2,
            )
        bank = [ctx.backbone.encode_texts(descs[c][:k]) for c in ctx.require_task().classes]
        self.register_buffer("bank", torch.stack(bank).to(ctx.backbone.device))  # (C, K, D), normalised
        self.register_buffer("t_bar", F.normalize(self.bank.mean(dim=1), dim=-1))

    def teacher(self, feats: Tensor) -> tuple[Tensor, Tensor]:
        """``(T_hat, keep)``: the pruned-mean teacher embeddings (C, D) and the kept mask (K,)."""
        keep = prune_descriptions(feats, self.bank, self.logit_scale, self.cfg.tau)
        return F.normalize(self.bank[:, keep].mean(dim=1), dim=-1), keep

    def loss(self, feats: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """``L = CE + lambda_S * SCCM + lambda_K * KD`` (see module docstring)."""
        feats = feats.to(self.backbone.device)
        z, t = self.ce_logits(feats)
        ce = cross_entropy(z, labels)
        sccm = sccm_loss(t, self.t_bar)
        t_hat, keep = self.teacher(feats)
        kd = kd_loss(z, self.logit_scale * feats @ t_hat.T)
        total = ce + self.cfg.lambda_S * sccm + self.cfg.lambda_K * kd
        return {"ce": ce, "sccm": sccm, "kd": kd, "kept": keep.sum().float(), "total": total}
