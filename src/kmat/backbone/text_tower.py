"""The prompt-injection contract every kind of text tower keeps (docs/methods.md, "Prompt construction").

A prompt learner builds ``[start] ctx_1 .. ctx_n tokens(suffix) [end]`` in the tower's raw
word-embedding space (no position embeddings) and hands it to :meth:`TextTower.encode_embeds` with
the mask of the real tokens (ones, then zeros for right padding). A tower kind is one small class:

- :class:`~kmat.backbone.hf_text.HFTextTower`: open_clip's ``HFTextEncoder`` (BiomedCLIP's
  PubMedBERT): ``[CLS]`` .. ``[SEP]``, bidirectional attention over the real tokens, ``[CLS]`` pooling;
- :class:`~kmat.backbone.native_text.NativeTextTower`: open_clip's own causal text transformer
  (OpenAI CLIP and its fine-tunes): ``<start_of_text>`` .. ``<end_of_text>``, end-token pooling.

With the context set to the word embeddings of real words, :meth:`TextTower.encode_embeds` equals
the model's own ``encode_text`` of the same token ids.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn


class TextTower(ABC):
    """One kind of frozen text tower, seen through the prompt-injection contract.

    Not an ``nn.Module``: it only points at modules of the frozen model, whose weights are not ours.
    """

    kind: ClassVar[str]  # a short name for messages ("hf", "native")

    @abstractmethod
    def __init__(self, model: nn.Module, tokenizer: object) -> None:
        """Point at the text tower of ``model`` (one that :meth:`matches`) and its tokenizer."""

    @classmethod
    @abstractmethod
    def matches(cls, model: nn.Module, tokenizer: object) -> bool:
        """Whether ``model`` (an open_clip model) and its tokenizer have this kind of text tower."""

    # ------------------------------------------------------------------ vocabulary
    @property
    @abstractmethod
    def context_length(self) -> int:
        """The longest token sequence the tower takes (BiomedCLIP 256, CLIP 77)."""

    @property
    @abstractmethod
    def pad_id(self) -> int:
        """The id right padding is filled with."""

    @property
    @abstractmethod
    def start_id(self) -> int:
        """The id of the first token of every sequence (``[CLS]``, ``<start_of_text>``)."""

    @property
    @abstractmethod
    def end_id(self) -> int:
        """The id of the last real token of every sequence (``[SEP]``, ``<end_of_text>``)."""

    @abstractmethod
    def token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens, cleaned as :meth:`tokenize` cleans it."""

    @abstractmethod
    def tokenize(self, texts: Sequence[str]) -> Tensor:
        """Token ids (N, context_length), start and end tokens included, exactly as open_clip makes them."""

    # ------------------------------------------------------------------ modules
    @property
    @abstractmethod
    def word_embeddings(self) -> nn.Embedding:
        """The frozen word-embedding table (raw: no position or type embeddings)."""

    @property
    @abstractmethod
    def module(self) -> nn.Module:
        """The text tower's modules (switched to train mode for text-tower dropout)."""

    @property
    @abstractmethod
    def output_dim(self) -> int:
        """Width of the projected text feature (the joint image-text space)."""

    @property
    def embed_width(self) -> int:
        """Width of the raw word-embedding space (768 for PubMedBERT, 512 for CLIP ViT-B)."""
        return int(self.word_embeddings.weight.shape[1])

    # ------------------------------------------------------------------ encoding
    def cut_padding(self, ids: Tensor) -> Tensor:
        """Drop the all-padding columns beyond the longest real sequence.

        The end token is non-padding and last in every sequence, so a padding id that is also a real
        token (CLIP's id 0 is ``!``) never cuts a sequence short.
        """
        real = (ids != self.pad_id).any(dim=0).nonzero()
        length = int(real.max()) + 1 if len(real) else 1
        return ids[:, :length]

    def embed_tokens(self, ids: Tensor) -> Tensor:
        """Raw word embeddings of token ids (frozen table; no position/type embeddings)."""
        return self.word_embeddings(ids.to(self.word_embeddings.weight.device))

    @abstractmethod
    def encode_ids(self, ids: Tensor) -> Tensor:
        """Unnormalised text features of token ids (N, L), exactly as the model's ``encode_text``."""

    @abstractmethod
    def encode_embeds(self, embeds: Tensor, mask: Tensor) -> Tensor:
        """Unnormalised text features of prompts given as raw word embeddings (N, L, width).

        ``mask`` (N, L): 1 on the real tokens (a prefix of each row, the end token last), 0 on padding.
        """


def last_real_position(mask: Tensor) -> Tensor:
    """Index of the last 1 of each row of a (N, L) 0/1 mask (where the end token sits)."""
    positions = torch.arange(mask.shape[1], device=mask.device)
    return (mask.long() * (positions + 1)).argmax(dim=1)
