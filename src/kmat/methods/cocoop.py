"""CoCoOp (Zhou et al., CVPR 2022) on BiomedCLIP (docs/methods.md, "CoCoOp").

A meta-net ``Linear(D -> D/16) -> ReLU -> Linear(D/16 -> width)`` maps the normalised image
feature ``f`` to a shift ``pi(f)`` added to every context vector, so each image has its own C
prompts: ``t_c(f) = norm(g([CLS] V_1+pi(f) .. V_n+pi(f) {classname}. [SEP]))``. All B x C prompts
of a batch go through the text tower in one pass. Loss ``CE(s * f . t(f), y)``. At test time the
same per-image prompts classify both modalities. A zeroed meta-net is exactly CoOp.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kmat.methods import register
from kmat.methods.base import Deployment, MethodContext, cross_entropy
from kmat.methods.config import option
from kmat.methods.coop import SharedPromptConfig, SharedPromptMethod


@dataclass
class CoCoOpConfig(SharedPromptConfig):
    epochs: int = 10
    batch_size: int = 1
    lr: float = 0.001
    meta_hidden: int | None = option(None, "meta-net hidden width (None: output dim // 16)", min=1)
    eval_batch_size: int = option(32, "test images per text pass (per-image prompts)", min=1)


@register
class CoCoOp(SharedPromptMethod[CoCoOpConfig]):
    name = "cocoop"
    Config = CoCoOpConfig
    per_image_prompts = True

    def __init__(self, ctx: MethodContext, cfg: CoCoOpConfig) -> None:
        super().__init__(ctx, cfg)
        d, width = ctx.backbone.output_dim, ctx.backbone.embed_width
        hidden = cfg.meta_hidden or max(1, d // 16)
        self.meta_net = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, width)).to(
            ctx.backbone.device
        )

    def image_logits(self, feats: Tensor) -> Tensor:
        """``z[b, c] = s * f_b . t_c(f_b)`` with per-image prompts (one text pass for B x C prompts)."""
        feats = feats.to(self.backbone.device)
        t = self.prompt(ctx_shift=self.meta_net(feats))  # (B, C, D)
        return self.logit_scale * torch.einsum("bd,bcd->bc", feats, t)

    def loss(self, feats: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """``L = CE(s * f . t(f), y)``."""
        loss = cross_entropy(self.image_logits(feats), labels)
        return {"ce": loss, "total": loss}

    def logits(self, feats: Tensor, role: str) -> Tensor:
        return self.image_logits(feats)

    @torch.no_grad()
    def predict_logits(self, feats: Tensor, role: str, batch_size: int | None = None) -> Tensor:
        bs = batch_size or self.cfg.eval_batch_size
        chunks = [self.image_logits(feats[i : i + bs]).cpu() for i in range(0, len(feats), bs)]
        return torch.cat(chunks) if chunks else torch.empty(0, len(self.ctx.classnames))

    def head(self) -> dict[str, Tensor]:
        """The learned context and meta-net: a new image's prompts are built from them."""
        return self.learnable_state()

    @classmethod
    def deployed_logits(cls, dep: Deployment, feats: Tensor, role: str) -> Tensor:
        """Per-image prompts through the saved context and meta-net (the text tower runs per image)."""
        return cls.rebuilt(dep).predict_logits(feats, role)

    @torch.no_grad()
    def class_embeddings(self) -> dict[str, Tensor]:
        """The image-independent part (meta-net shift 0), for figures only."""
        t = self.prompt()
        return {"high": t, "low": t}
