"""CLIP-Adapter (Gao et al., "CLIP-Adapter: Better Vision-Language Models with Feature Adapters",
IJCV 2024 / arXiv 2110.04544) on BiomedCLIP (docs/methods.md, "CLIP-Adapter").

A residual bottleneck MLP on the frozen image feature, a zero-shot text classifier on top::

    A(f) = ReLU(W_2 ReLU(W_1 f))          W_1: D -> D/4, W_2: D/4 -> D (no biases)
    f'   = alpha * A(f) + (1 - alpha) * f
    z_c  = s * norm(f') . t_c              L = CE(z, y)

``t_c = norm(encode_text("a photo of a {classname}."))``: one hand-written template, the same for
both modalities (as CoOp's prompt; the BiomedCoOp trainers use this single template too), so a
low-end image is classified with its adapted feature and the same text embeddings. Only W_1, W_2
are learned, by the engine.

Recipe from BiomedCoOp (Koleilat et al., CVPR 2025) ``configs/trainers/CLIP_Adapter/few_shot.yaml``
and its CLIP-Adapter trainer: ``alpha_ca: 0.5`` (not searched: ``search_alpha_ca: False``), lr 0.01,
20 epochs, 1 warm-up epoch at the constant lr 1e-5, plain SGD (no momentum, no weight decay),
batch 32 (``FIXED_BATCH_SIZE`` of its ``main.py``), adapter reduction 4 without biases. Differences
from that trainer (kmat's one loop, documented): the cosine schedule is stepped once per epoch (the
trainer steps its ``CosineAnnealingLR(T_max=epochs)`` once per batch); the model after the last
epoch is evaluated (the trainer keeps the epoch with the best validation accuracy); the adapted
feature is re-normalised before the cosine with the text embeddings, as in the CLIP-Adapter paper
and its code (the BiomedCoOp trainer leaves that line commented out; ``normalize_adapted=False``
does the same).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kmat.methods import register
from kmat.methods.base import Deployment, Method, MethodContext, cross_entropy
from kmat.methods.config import MethodConfig, option

CA_SOURCE = (
    "BiomedCoOp (Koleilat et al., CVPR 2025) configs/trainers/CLIP_Adapter/few_shot.yaml and its trainer"
)


@dataclass
class ClipAdapterConfig(MethodConfig):
    """CLIP-Adapter's published BiomedCLIP recipe (module docstring)."""

    epochs: int = 20  # CA_SOURCE: train_epoch 20
    batch_size: int = 32  # BiomedCoOp main.py: FIXED_BATCH_SIZE 32
    lr: float = 0.01  # CA_SOURCE: lr 0.01
    momentum: float = 0.0  # CA_SOURCE: torch.optim.SGD(params, lr): no momentum
    weight_decay: float = 0.0  # CA_SOURCE: no weight decay
    warmup_epochs: int = 1  # CA_SOURCE: WARMUP_EPOCH 1
    warmup_lr: float = 1e-5  # CA_SOURCE: WARMUP_CONS_LR 0.00001
    alpha: float = option(
        0.5, f"residual ratio alpha of f' = alpha A(f) + (1 - alpha) f ({CA_SOURCE}: alpha_ca)", min=0, max=1
    )
    reduction: int = option(4, f"bottleneck width D / reduction ({CA_SOURCE})", min=1)
    normalize_adapted: bool = option(
        True, "re-normalise f' before the cosine with t (the CLIP-Adapter paper)"
    )
    template: str = option(
        "a photo of a {classname}.", "prompt of the zero-shot text classifier (both modalities)"
    )


def adapter_mlp(d: int, reduction: int) -> nn.Sequential:
    """``A = Linear(D, D/r) ReLU Linear(D/r, D) ReLU``, without biases."""
    h = max(1, d // reduction)
    return nn.Sequential(nn.Linear(d, h, bias=False), nn.ReLU(), nn.Linear(h, d, bias=False), nn.ReLU())


def residual_features(adapter: nn.Module, feats: Tensor, alpha: float, normalize: bool = True) -> Tensor:
    """``f' = alpha * A(f) + (1 - alpha) * f``, L2-normalised when ``normalize``."""
    out = alpha * adapter(feats) + (1.0 - alpha) * feats
    return F.normalize(out, dim=-1) if normalize else out


@register
class ClipAdapter(Method[ClipAdapterConfig]):
    """``z = s * norm(alpha A(f) + (1 - alpha) f) . t^zs``; the adapter is learned."""

    name = "clip_adapter"
    Config = ClipAdapterConfig
    text: Tensor  # (C, D) zero-shot embeddings (a buffer)

    def __init__(self, ctx: MethodContext, cfg: ClipAdapterConfig) -> None:
        super().__init__(ctx, cfg)
        t = ctx.zeroshot_embeddings(cfg.template)
        self.register_buffer("text", t.clone())
        self.adapter = adapter_mlp(ctx.backbone.output_dim, cfg.reduction).to(t.device)

    def adapted(self, feats: Tensor) -> Tensor:
        """``f'`` of a batch of normalised image features."""
        return residual_features(
            self.adapter, feats.to(self.text), self.cfg.alpha, self.cfg.normalize_adapted
        )

    def loss(self, feats: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """``L = CE(s * norm(f') . t, y)``."""
        ce = cross_entropy(self.logits(feats, "high"), labels)
        return {"ce": ce, "total": ce}

    @torch.no_grad()
    def class_embeddings(self) -> dict[str, Tensor]:
        """The zero-shot text embeddings (the same for both roles); images are adapted instead."""
        return {"high": self.text, "low": self.text}

    def logits(self, feats: Tensor, role: str) -> Tensor:
        """``s * norm(f') . t`` (both roles: the same adapter and text embeddings)."""
        return self.logit_scale * self.adapted(feats) @ self.text.T

    @torch.no_grad()
    def predict_logits(self, feats: Tensor, role: str, batch_size: int = 1024) -> Tensor:
        chunks = [
            self.logits(feats[i : i + batch_size], role).cpu() for i in range(0, len(feats), batch_size)
        ]
        return torch.cat(chunks) if chunks else torch.empty(0, self.text.shape[0])

    def head(self) -> dict[str, Tensor]:
        """The adapter's weights (a new image is adapted before it is classified)."""
        return self.learnable_state()

    @classmethod
    def deployed_logits(cls, dep: Deployment, feats: Tensor, role: str) -> Tensor:
        """``s * norm(f') . t_role``: the saved adapter on the image, the saved class embeddings."""
        m = cls.rebuilt(dep)
        t = dep.embeddings[role].to(feats.device, feats.dtype)
        return dep.logit_scale * m.adapted(feats).to(feats.dtype) @ t.T
