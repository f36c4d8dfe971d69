"""Prompt learners: learnable context spliced after the start token in word-embedding space.

A prompt is ``[start] ctx_1 .. ctx_n tokens(suffix) [end]``: ``[CLS] .. [SEP]`` for BiomedCLIP's
BERT, ``<start_of_text> .. <end_of_text>`` for CLIP's own text transformer. The frozen parts (the
start token, the suffix tokens, the end token) are embedded once; each forward pass concatenates them with the
learnable context and runs every prompt in one batched text pass, padded only to the longest prompt.

- :class:`SharedContextPrompt` (CoOp family): one context shared by all classes, suffix
  ``"{classname}."``; optionally initialised from the words "a photo of a".
- :class:`FactorisedPrompt` (K-MaT): ``[V_shared]x4 [V^m]x4 (MSC) [V_i^m]x4 (CSC)`` then
  ``"{classname} {modality}."``, for both modalities: 2C prompts per pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from kmat.backbone import Backbone


class PromptSuffixes(nn.Module):
    """Frozen embeddings of the start token and of N suffixes (tokens + the end token), right-padded."""

    # buffers registered in __init__
    cls_embed: Tensor
    suffix_embed: Tensor
    suffix_mask: Tensor

    def __init__(self, backbone: Backbone, suffixes: Sequence[str]) -> None:
        super().__init__()
        ids = [backbone.token_ids(s) + [backbone.end_id] for s in suffixes]
        length = max(len(x) for x in ids)
        padded = torch.full((len(ids), length), backbone.pad_id, dtype=torch.long)
        mask = torch.zeros(len(ids), length, dtype=torch.long)
        for i, x in enumerate(ids):
            padded[i, : len(x)] = torch.tensor(x)
            mask[i, : len(x)] = 1
        with torch.no_grad():
            self.register_buffer(
                "cls_embed", backbone.embed_tokens(torch.tensor([backbone.start_id])).detach().clone()
            )
            self.register_buffer("suffix_embed", backbone.embed_tokens(padded).detach().clone())
        self.register_buffer("suffix_mask", mask.to(self.suffix_embed.device))
        self.max_len = backbone.context_length

    def forward(self, ctx: Tensor) -> tuple[Tensor, Tensor]:
        """Assemble ``(embeds, mask)`` for context ``ctx`` of shape (R*N, n_ctx, width).

        ``R`` > 1 repeats the N suffixes R times (CoCoOp: one set of prompts per image).
        """
        n = self.suffix_embed.shape[0]
        if ctx.shape[0] % n:
            raise ValueError(f"context batch {ctx.shape[0]} is not a multiple of the {n} prompts")
        reps = ctx.shape[0] // n
        suffix = self.suffix_embed.repeat(reps, 1, 1)
        smask = self.suffix_mask.repeat(reps, 1)
        cls = self.cls_embed.expand(ctx.shape[0], 1, -1)
        embeds = torch.cat([cls, ctx.to(suffix.dtype), suffix], dim=1)
        mask = torch.cat(
            [torch.ones(ctx.shape[0], 1 + ctx.shape[1], dtype=smask.dtype, device=smask.device), smask], 1
        )
        if embeds.shape[1] > self.max_len:
            raise ValueError(f"prompts of {embeds.shape[1]} tokens exceed the context length {self.max_len}")
        return embeds, mask


def init_context_from_words(backbone: Backbone, words: str) -> Tensor:
    """Word embeddings of ``words`` (e.g. "a photo of a"): CoOp's context initialisation."""
    ids = torch.tensor(backbone.token_ids(words))
    with torch.no_grad():
        return backbone.embed_tokens(ids).detach().clone().float()


class SharedContextPrompt(nn.Module):
    """CoOp-style prompts ``[start] V_1..V_n {classname}. [end]`` with a context shared by all classes."""

    def __init__(
        self,
        backbone: Backbone,
        classnames: Sequence[str],
        n_ctx: int = 4,
        init_words: str | None = "a photo of a",
        template: str = "{classname}.",
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        self.suffixes = PromptSuffixes(backbone, [template.format(classname=c) for c in classnames])
        if init_words:
            ctx = init_context_from_words(backbone, init_words)
            if ctx.shape[0] != n_ctx:
                raise ValueError(f"init words {init_words!r} give {ctx.shape[0]} tokens, not n_ctx={n_ctx}")
        else:
            ctx = torch.randn(n_ctx, backbone.embed_width) * init_std
        self.ctx = nn.Parameter(ctx.to(backbone.device))
        self.backbone = backbone  # a plain object, not an nn.Module: its weights are not ours

    def forward(self, ctx_shift: Tensor | None = None) -> Tensor:
        """Normalised class embeddings (C, D); with ``ctx_shift`` (B, width): per-image (B, C, D)."""
        bb = self.backbone
        n_cls = self.suffixes.suffix_embed.shape[0]
        if ctx_shift is None:
            ctx = self.ctx.unsqueeze(0).expand(n_cls, -1, -1)
            return bb.encode_prompts(*self.suffixes(ctx))
        b = ctx_shift.shape[0]
        ctx = self.ctx.unsqueeze(0) + ctx_shift.unsqueeze(1)  # (B, n_ctx, width)
        ctx = ctx.unsqueeze(1).expand(b, n_cls, -1, -1).reshape(b * n_cls, *self.ctx.shape)
        return bb.encode_prompts(*self.suffixes(ctx)).view(b, n_cls, -1)


class FactorisedPrompt(nn.Module):
    """K-MaT's factorised prompt for class i and modality m (docs/methods.md, "K-MaT"):

    ``P_i^m = [start] [V_shared]x n [V^m]x n (if MSC) [V_i^m]x n (if CSC) tokens("{classname} {modality}.") [end]``

    ``V_shared`` is shared by every class and modality; ``V^m`` is one set per modality (MSC);
    ``V_i^m`` one set per class, per modality when MSC is on and per class only when it is off (CSC).
    All are initialised from N(0, init_std). Class and modality words are fixed.
    """

    def __init__(
        self,
        backbone: Backbone,
        classnames: Sequence[str],
        modality_names: Sequence[str],
        n_ctx: int = 4,
        csc: bool = True,
        msc: bool = True,
        template: str = "{classname} {modality}.",
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        width = backbone.embed_width
        n_mod, n_cls = len(modality_names), len(classnames)
        self.n_mod, self.n_cls, self.n_ctx = n_mod, n_cls, n_ctx
        self.csc, self.msc = csc, msc
        dev = backbone.device  # drawn on the CPU so that a seed gives the same init on every device
        self.shared = nn.Parameter((torch.randn(n_ctx, width) * init_std).to(dev))
        self.modality_ctx = (
            nn.Parameter((torch.randn(n_mod, n_ctx, width) * init_std).to(dev)) if msc else None
        )
        if csc:
            shape = (n_mod, n_cls, n_ctx, width) if msc else (n_cls, n_ctx, width)
            self.class_ctx: nn.Parameter | None = nn.Parameter((torch.randn(*shape) * init_std).to(dev))
        else:
            self.class_ctx = None
        suffixes = [template.format(classname=c, modality=m) for m in modality_names for c in classnames]
        self.suffixes = PromptSuffixes(backbone, suffixes)
        self.backbone = backbone

    def context(self) -> Tensor:
        """The assembled context of every prompt, (n_mod * C, n_tokens, width), modality-major."""
        m, c, n = self.n_mod, self.n_cls, self.n_ctx
        parts = [self.shared.expand(m, c, n, -1)]
        if self.modality_ctx is not None:
            parts.append(self.modality_ctx.unsqueeze(1).expand(m, c, n, -1))
        if self.class_ctx is not None:
            cc = self.class_ctx if self.msc else self.class_ctx.unsqueeze(0).expand(m, c, n, -1)
            parts.append(cc)
        ctx = torch.cat(parts, dim=2)
        return ctx.reshape(m * c, ctx.shape[2], ctx.shape[3])

    def forward(self) -> Tensor:
        """Normalised prompt embeddings ``t`` of shape (n_mod, C, D): ``t[m, i] = norm(g(P_i^m))``."""
        t = self.backbone.encode_prompts(*self.suffixes(self.context()))
        return t.view(self.n_mod, self.n_cls, -1)
