"""Hugging Face (BERT-family) text towers: open_clip's ``HFTextEncoder`` (BiomedCLIP's PubMedBERT).

Prompt injection (docs/methods.md): ``g(P) = proj(pool(BERT(inputs_embeds=P, attention_mask=mask)))``.
BERT adds position and token-type embeddings itself; padding is masked and pooling takes the
``[CLS]`` state, so padding beyond the longest real prompt changes nothing and is cut off.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast

from torch import Tensor, nn

from kmat.backbone.text_tower import TextTower

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class _HFTokenizer(Protocol):
    """The parts of open_clip's ``HFTokenizer`` that kmat uses."""

    context_length: int  # set by open_clip's ``get_tokenizer`` from the model config
    tokenizer: PreTrainedTokenizerBase
    clean_fn: Callable[[str], str]

    def __call__(self, texts: list[str]) -> Tensor: ...


class _BertEmbeddings(Protocol):
    word_embeddings: nn.Embedding


class _BertModel(Protocol):
    """The Hugging Face (BERT-family) model inside open_clip's text tower."""

    embeddings: _BertEmbeddings

    def __call__(self, *, inputs_embeds: Tensor, attention_mask: Tensor) -> Any: ...


class _HFTextEncoder(Protocol):
    """The parts of open_clip's ``HFTextEncoder`` that kmat uses."""

    transformer: _BertModel
    config: Any  # the transformers config of ``transformer``
    output_dim: int
    pooler: Callable[[Any, Tensor], Tensor]
    proj: Callable[[Tensor], Tensor]


class _CustomTextCLIP(Protocol):
    text: _HFTextEncoder

    def encode_text(self, text: Tensor) -> Tensor: ...


class HFTextTower(TextTower):
    """The HF text tower ``model.text`` of an open_clip ``CustomTextCLIP`` with an ``HFTokenizer``."""

    kind: ClassVar[str] = "hf"

    def __init__(self, model: nn.Module, tokenizer: object) -> None:
        self._model = cast(_CustomTextCLIP, model)  # open_clip is untyped; ``matches`` checked it
        self._tok = cast(_HFTokenizer, tokenizer)

    @classmethod
    def matches(cls, model: nn.Module, tokenizer: object) -> bool:
        text = getattr(model, "text", None)
        bert = getattr(text, "transformer", None)
        return (
            hasattr(getattr(bert, "embeddings", None), "word_embeddings")
            and hasattr(text, "pooler")
            and hasattr(text, "proj")
            and hasattr(tokenizer, "tokenizer")  # the wrapped Hugging Face tokenizer
        )

    @property
    def _tower(self) -> _HFTextEncoder:
        return self._model.text

    @property
    def hf_tokenizer(self) -> PreTrainedTokenizerBase:
        """The Hugging Face tokenizer inside open_clip's ``HFTokenizer``."""
        return self._tok.tokenizer

    # ------------------------------------------------------------------ vocabulary
    @property
    def context_length(self) -> int:
        return int(self._tok.context_length)

    @property
    def pad_id(self) -> int:
        return int(self._tower.config.pad_token_id or 0)

    @property
    def start_id(self) -> int:
        return int(self.hf_tokenizer.cls_token_id)

    @property
    def end_id(self) -> int:
        return int(self.hf_tokenizer.sep_token_id)

    def token_ids(self, text: str) -> list[int]:
        return list(self.hf_tokenizer(self._tok.clean_fn(text), add_special_tokens=False)["input_ids"])

    def tokenize(self, texts: Sequence[str]) -> Tensor:
        return self._tok(list(texts))

    # ------------------------------------------------------------------ modules
    @property
    def word_embeddings(self) -> nn.Embedding:
        return self._tower.transformer.embeddings.word_embeddings

    @property
    def module(self) -> nn.Module:
        return cast(nn.Module, self._tower)

    @property
    def output_dim(self) -> int:
        return int(self._tower.output_dim)

    # ------------------------------------------------------------------ encoding
    def encode_ids(self, ids: Tensor) -> Tensor:
        return self._model.encode_text(ids)

    def encode_embeds(self, embeds: Tensor, mask: Tensor) -> Tensor:
        mask = mask.long()
        out = self._tower.transformer(inputs_embeds=embeds, attention_mask=mask)
        return self._tower.proj(self._tower.pooler(out, mask))
