"""open_clip's own text transformer: OpenAI CLIP and its fine-tunes (``open_clip.model.CLIP``).

The tower (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision"; open_clip's ``CLIP.encode_text``) is a causal transformer over byte-pair tokens
``<start_of_text> w_1 .. w_k <end_of_text>`` (context 77, right-padded with id 0):

    x = E[ids] + P[:L]                    E: token_embedding, P: positional_embedding
    h = ln_final(transformer(x, causal mask))
    g = h[eot] @ W                        eot: the end token's position, W: text_projection

``eot`` is ``argmax(ids)`` (the end token has the largest id of the vocabulary; open_clip's
``text_global_pool`` with ``pool_type="argmax"``), or the first ``eos_id`` (``pool_type="eos"``).

Prompt injection splices the learnable context into ``x`` before the position embeddings are added,
right after ``<start_of_text>``, and pools at the last real token, which is ``<end_of_text>``. The
causal mask means no token sees a later one, so the padding after the end token never reaches the
pooled state: padding beyond the longest real prompt is cut off (the position embeddings and the
causal mask are sliced to the cut length) and the output is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, cast

import torch
from torch import Tensor, nn

from kmat.backbone.text_tower import TextTower, last_real_position
from kmat.errors import BackboneError

POOL_TYPES = ("argmax", "eos")  # the end-token poolings; the others are not prompt-injectable here


class _SimpleTokenizer(Protocol):
    """The parts of open_clip's ``SimpleTokenizer`` (CLIP's byte-pair tokenizer) that kmat uses."""

    context_length: int
    sot_token_id: int
    eot_token_id: int

    def encode(self, text: str) -> list[int]: ...

    def __call__(self, texts: list[str]) -> Tensor: ...


class _Transformer(Protocol):
    def __call__(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor: ...

    def get_cast_dtype(self) -> torch.dtype: ...


class _NativeText(Protocol):
    """The text parts of open_clip's ``CLIP`` (or of a ``TextTransformer``), by their open_clip names."""

    token_embedding: nn.Embedding
    positional_embedding: Tensor
    transformer: _Transformer
    ln_final: nn.Module
    text_projection: Any  # an (width, D) parameter, an nn.Linear, or None
    attn_mask: Tensor | None


def _holder(model: nn.Module) -> nn.Module | None:
    """The module that holds the native text parts: ``CLIP`` itself, or a ``TextTransformer`` text tower."""
    for candidate in (model, getattr(model, "text", None)):
        if isinstance(candidate, nn.Module) and all(
            hasattr(candidate, a)
            for a in ("token_embedding", "positional_embedding", "transformer", "ln_final")
        ):
            return candidate
    return None


class NativeTextTower(TextTower):
    """open_clip's own causal text transformer with CLIP's ``SimpleTokenizer``."""

    kind: ClassVar[str] = "native"

    def __init__(self, model: nn.Module, tokenizer: object) -> None:
        holder = _holder(model)
        if holder is None:
            raise BackboneError(f"{type(model).__name__} has no open_clip text transformer")
        self._holder = holder
        self._text = cast(_NativeText, holder)  # open_clip is untyped; ``_holder`` checked the names
        self._tok = cast(_SimpleTokenizer, tokenizer)
        # CLIP names them text_pool_type / text_eos_id, a TextTransformer pool_type / eos_id
        self.pool_type = str(getattr(holder, "text_pool_type", getattr(holder, "pool_type", "argmax")))
        self.eos_id = getattr(holder, "text_eos_id", getattr(holder, "eos_id", None))
        self._check()
        self._module = nn.ModuleList(
            [self._text.token_embedding, cast(nn.Module, self._text.transformer), self._text.ln_final]
        )

    @classmethod
    def matches(cls, model: nn.Module, tokenizer: object) -> bool:
        return _holder(model) is not None and all(
            hasattr(tokenizer, a) for a in ("sot_token_id", "eot_token_id", "encode")
        )

    def _check(self) -> None:
        """Refuse the variants whose prompts this tower would not encode as ``encode_text`` does."""
        what = f"open_clip text transformer of {type(self._holder).__name__}"
        if self.pool_type not in POOL_TYPES:
            raise BackboneError(
                f"{what}: pooling {self.pool_type!r} is not supported (kmat pools at the end token: {POOL_TYPES})"
            )
        if self.pool_type == "eos" and self.eos_id != self._tok.eot_token_id:
            raise BackboneError(
                f"{what}: pools at token id {self.eos_id}, but the tokenizer ends sequences with "
                f"{self._tok.eot_token_id}"
            )
        if self._text.attn_mask is None:
            raise BackboneError(f"{what}: bidirectional (no causal mask) towers are not supported")
        if getattr(self._holder, "cls_emb", None) is not None:
            raise BackboneError(f"{what}: towers with an appended class token (CoCa) are not supported")

    # ------------------------------------------------------------------ vocabulary
    @property
    def context_length(self) -> int:
        return int(self._tok.context_length)

    @property
    def pad_id(self) -> int:
        return 0  # SimpleTokenizer fills with zeros

    @property
    def start_id(self) -> int:
        return int(self._tok.sot_token_id)

    @property
    def end_id(self) -> int:
        return int(self._tok.eot_token_id)

    def token_ids(self, text: str) -> list[int]:
        return list(self._tok.encode(text))  # cleaned (lower case, whitespace) as __call__ cleans it

    def tokenize(self, texts: Sequence[str]) -> Tensor:
        return self._tok(list(texts))

    # ------------------------------------------------------------------ modules
    @property
    def word_embeddings(self) -> nn.Embedding:
        return self._text.token_embedding

    @property
    def module(self) -> nn.Module:
        return self._module

    @property
    def output_dim(self) -> int:
        proj = self._text.text_projection
        if proj is None:
            return self.embed_width
        if isinstance(proj, nn.Linear):
            return int(proj.out_features)
        return int(proj.shape[1])

    # ------------------------------------------------------------------ encoding
    def end_positions(self, ids: Tensor) -> Tensor:
        """Where each sequence of token ids ends, as open_clip's ``text_global_pool`` finds it."""
        if self.pool_type == "eos":
            return ids.eq(self.end_id).int().argmax(dim=-1)  # eos_id == end_id (checked)
        return ids.argmax(dim=-1)

    def encode_ids(self, ids: Tensor) -> Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        mask = (positions.unsqueeze(0) <= self.end_positions(ids).unsqueeze(1)).long()
        return self.encode_embeds(self.embed_tokens(ids), mask)

    def encode_embeds(self, embeds: Tensor, mask: Tensor) -> Tensor:
        text = self._text
        length = embeds.shape[1]
        cast_dtype = text.transformer.get_cast_dtype()
        x = embeds.to(cast_dtype) + text.positional_embedding[:length].to(cast_dtype)
        causal = text.attn_mask[:length, :length] if text.attn_mask is not None else None
        x = text.ln_final(text.transformer(x, attn_mask=causal))
        end = last_real_position(mask.to(x.device))
        pooled = x[torch.arange(x.shape[0], device=x.device), end]
        proj = text.text_projection
        if proj is None:
            return pooled
        if isinstance(proj, nn.Linear):
            return proj(pooled)
        return pooled @ proj
