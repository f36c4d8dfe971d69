"""The frozen vision-language backbone: BiomedCLIP, any open_clip model of its family, and CLIP.

A backbone is loaded from a spec string:

- ``biomedclip``: ``hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``;
- ``hf-hub:ORG/NAME``: any open_clip model on the Hugging Face hub;
- ``local-dir:PATH``: an open_clip model folder (``open_clip_config.json`` + weights + tokenizer).

It is frozen (``requires_grad=False``, ``eval()`` pinned). Besides encoding images and token ids,
it encodes *prompts given as word embeddings* (docs/methods.md, "Prompt construction"): the
learnable context is spliced right after the start token in the raw word-embedding space of the
text tower, and the rest of the tower runs on them. Padding beyond the longest real prompt is cut off.

Two kinds of text tower keep that contract (:class:`~kmat.backbone.text_tower.TextTower`, one
module each): a Hugging Face BERT-like tower with ``[CLS]`` pooling (BiomedCLIP,
:mod:`kmat.backbone.hf_text`) and open_clip's own causal text transformer with end-token pooling
(OpenAI CLIP and its fine-tunes, :mod:`kmat.backbone.native_text`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kmat import PRECISIONS
from kmat.backbone.hf_text import HFTextTower
from kmat.backbone.native_text import NativeTextTower
from kmat.backbone.text_tower import TextTower
from kmat.errors import BackboneError, ConfigError
from kmat.utils.cache import file_sha256

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

BIOMEDCLIP_HUB_ID = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
BIOMEDCLIP_SPEC = f"hf-hub:{BIOMEDCLIP_HUB_ID}"
DEFAULT_BACKBONE = "biomedclip"

log = logging.getLogger(__name__)


def shipped_demo_backbone() -> Path:
    """The demo backbone shipped in the package (``kmat/assets/demo_backbone``)."""
    from importlib import resources

    folder = Path(str(resources.files("kmat.assets") / "demo_backbone"))
    if not (folder / "open_clip_model.safetensors").is_file():
        raise BackboneError(f"{folder}: the shipped demo backbone is missing (reinstall kmat)")
    return folder


def resolve_spec(spec: str) -> str:
    """Turn a user spec (``biomedclip``, ``demo``, ``hf-hub:..``, ``local-dir:..``) into an open_clip name."""
    spec = spec.strip()
    if spec == "biomedclip":
        return BIOMEDCLIP_SPEC
    if spec == "demo":
        return f"local-dir:{shipped_demo_backbone()}"
    if spec.startswith(("hf-hub:", "local-dir:")):
        return spec
    if Path(spec).is_dir() and (Path(spec) / "open_clip_config.json").is_file():
        return f"local-dir:{Path(spec).resolve()}"
    raise BackboneError(
        f"unknown backbone spec {spec!r}: use 'biomedclip', 'demo', 'hf-hub:ORG/NAME' "
        "or 'local-dir:PATH' (a folder with open_clip_config.json)"
    )


def _offline_help(name: str, err: BaseException) -> str:
    hub_id = name.removeprefix("hf-hub:")
    return (
        f"could not load backbone {name!r}: the model hub is unreachable or the model is not cached "
        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}).\n"
        "To use a local copy, download it once on a machine with internet access, e.g.\n"
        f"  huggingface-cli download {hub_id} --local-dir DIR\n"
        "  huggingface-cli download microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract "
        "config.json vocab.txt tokenizer_config.json --local-dir DIR\n"
        "then use the backbone local-dir:DIR (or set HF_HUB_OFFLINE=1 with a populated Hugging Face cache)."
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face endpoint answers a TCP connection within ``timeout`` seconds."""
    import socket
    from urllib.parse import urlparse

    try:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return False
        url = urlparse(constants.ENDPOINT)
    except Exception:  # noqa: BLE001 - no hub library: nothing to reach
        return False
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Use only the local Hugging Face cache (no network retries) for the duration."""
    from huggingface_hub import constants

    old, old_env = constants.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE")
    constants.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env


def _pin_eval(model: nn.Module) -> None:
    """Keep ``model`` and all its sub-modules in eval mode whatever ``.train()`` is called with."""
    model.eval()

    def _train(self: nn.Module, mode: bool = True) -> nn.Module:  # noqa: ARG001 - pinned
        return self

    model.train = types.MethodType(_train, model)  # type: ignore[method-assign]  # pinned on this instance


class _Tokenizer(Protocol):
    """The parts of an open_clip tokenizer (``HFTokenizer``, ``SimpleTokenizer``) that kmat uses."""

    context_length: int  # set by open_clip's ``get_tokenizer`` from the model config

    def __call__(self, texts: list[str]) -> Tensor: ...


class _ClipModel(Protocol):
    """The parts of an open_clip model (``CustomTextCLIP``, ``CLIP``) that kmat uses."""

    logit_scale: Tensor

    def encode_image(self, image: Tensor) -> Tensor: ...

    def encode_text(self, text: Tensor) -> Tensor: ...


TEXT_TOWERS: tuple[type[TextTower], ...] = (HFTextTower, NativeTextTower)


def text_tower(model: nn.Module, tokenizer: object, name: str = "the model") -> TextTower:
    """The :class:`TextTower` of ``model``: the first kind in :data:`TEXT_TOWERS` that matches it."""
    for kind in TEXT_TOWERS:
        if kind.matches(model, tokenizer):
            return kind(model, tokenizer)
    raise BackboneError(
        f"{name}: kmat needs an open_clip model with a Hugging Face (BERT-like) text tower (BiomedCLIP) "
        f"or open_clip's own text transformer with CLIP's tokenizer (OpenAI CLIP); got "
        f"{type(model).__name__} with {type(tokenizer).__name__}"
    )


@dataclass
class Backbone:
    """A frozen open_clip model; its text tower is reached through a :class:`TextTower` of its kind."""

    model: nn.Module
    tokenizer: _Tokenizer
    name: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    checkpoint: str | None = None
    precision: str = "fp32"  # "bf16": autocast the frozen towers to bfloat16 (GPU)
    tower: TextTower | None = field(default=None, repr=False)  # None: found from model + tokenizer
    _identity: str | None = field(default=None, repr=False)
    _logit_scale: float | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.tower is None:
            self.tower = text_tower(self.model, self.tokenizer, self.name)

    # ------------------------------------------------------------------ properties
    @property
    def _clip(self) -> _ClipModel:
        # open_clip is untyped: ``model`` is a CustomTextCLIP or CLIP (see load_backbone)
        return cast(_ClipModel, self.model)

    @property
    def _text(self) -> TextTower:
        if self.tower is None:  # set by __post_init__; for the type checker
            raise BackboneError(f"{self.name}: no text tower")
        return self.tower

    @property
    def text_kind(self) -> str:
        """The kind of text tower: ``hf`` (BiomedCLIP's BERT) or ``native`` (OpenAI CLIP's transformer)."""
        return self._text.kind

    @property
    def text(self) -> nn.Module:
        """The text tower's modules."""
        return self._text.module

    @property
    def device(self) -> torch.device:
        return self._clip.logit_scale.device

    @property
    def dtype(self) -> torch.dtype:
        return self._clip.logit_scale.dtype

    @property
    def logit_scale(self) -> float:
        """``s = logit_scale.exp()`` of the backbone (frozen: read once, not once per training step)."""
        if self._logit_scale is None:
            self._logit_scale = float(self._clip.logit_scale.detach().exp())
        return self._logit_scale

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self._text.word_embeddings

    @property
    def embed_width(self) -> int:
        """Width of the raw word-embedding space (768 for PubMedBERT, 512 for CLIP ViT-B/16)."""
        return self._text.embed_width

    @property
    def output_dim(self) -> int:
        return self._text.output_dim

    @property
    def context_length(self) -> int:
        return self._text.context_length

    @property
    def _hf_tok(self) -> PreTrainedTokenizerBase:
        """The Hugging Face tokenizer of an HF text tower."""
        if not isinstance(self.tower, HFTextTower):
            raise BackboneError(f"{self.name}: the text tower is not a Hugging Face one")
        return self.tower.hf_tokenizer

    @property
    def pad_id(self) -> int:
        return self._text.pad_id

    @property
    def start_id(self) -> int:
        """The id every sequence starts with (``[CLS]``, ``<start_of_text>``)."""
        return self._text.start_id

    @property
    def end_id(self) -> int:
        """The id every sequence ends with (``[SEP]``, ``<end_of_text>``)."""
        return self._text.end_id

    @property
    def cls_id(self) -> int:
        """Alias of :attr:`start_id` (BERT's name)."""
        return self.start_id

    @property
    def sep_id(self) -> int:
        """Alias of :attr:`end_id` (BERT's name)."""
        return self.end_id

    def identity(self) -> str:
        """A string that changes whenever the weights change: spec + sha256 of the weights."""
        if self._identity is None:
            if self.checkpoint and Path(self.checkpoint).is_file():
                digest = file_sha256(self.checkpoint)
            else:
                h = hashlib.sha256()
                for k, v in sorted(self.model.state_dict().items()):
                    h.update(k.encode())
                    h.update(v.detach().cpu().contiguous().numpy().tobytes())
                digest = h.hexdigest()
            self._identity = f"{self.name}@{digest[:16]}"
        return self._identity

    # ------------------------------------------------------------------ modes
    @contextlib.contextmanager
    def text_dropout(self, enabled: bool = True) -> Iterator[None]:
        """Temporarily switch the text tower's dropout on (BiomedCoOp trains with it on)."""
        if not enabled:
            yield
            return
        nn.Module.train(self.text, True)
        try:
            yield
        finally:
            nn.Module.train(self.text, False)

    def autocast(self):
        """bfloat16 autocast of the frozen towers when ``precision == "bf16"``; a no-op otherwise."""
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def set_precision(self, precision: str) -> Backbone:
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        return self

    def to(self, device: str | torch.device) -> Backbone:
        self.model.to(device)
        return self

    # ------------------------------------------------------------------ images
    @torch.no_grad()
    def encode_images(self, images: Tensor) -> Tensor:
        """L2-normalised image features ``f`` of a batch of preprocessed images (B, 3, H, W)."""
        images = images.to(self.device, dtype=self.dtype)
        with self.autocast():
            feats = self._clip.encode_image(images)
        return F.normalize(feats.float(), dim=-1)

    # ------------------------------------------------------------------ text
    def tokenize(self, texts: Sequence[str]) -> Tensor:
        """Token ids (N, context_length) exactly as open_clip tokenizes them."""
        return self._text.tokenize(texts)

    def token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens (same cleaning as :meth:`tokenize`)."""
        return self._text.token_ids(text)

    def cut_padding(self, ids: Tensor) -> Tensor:
        """Drop the all-padding columns beyond the longest real sequence."""
        return self._text.cut_padding(ids)

    def encode_text(self, ids: Tensor, normalize: bool = True) -> Tensor:
        """Text features of token ids, as the model's own ``encode_text`` gives them (padding cut)."""
        ids = self.cut_padding(ids).to(self.device)
        with self.autocast():
            feats = self._text.encode_ids(ids).float()
        return F.normalize(feats, dim=-1) if normalize else feats

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> Tensor:
        """L2-normalised features of plain sentences (no grad, batched, padding cut per batch)."""
        out = [
            self.encode_text(self.tokenize(texts[i : i + batch_size]))
            for i in range(0, len(texts), batch_size)
        ]
        return torch.cat(out) if out else torch.empty(0, self.output_dim)

    def embed_tokens(self, ids: Tensor) -> Tensor:
        """Raw word embeddings of token ids (frozen table; no position/type embeddings)."""
        return self._text.embed_tokens(ids.to(self.device))

    def encode_prompts(self, embeds: Tensor, attention_mask: Tensor, normalize: bool = True) -> Tensor:
        """Encode prompts given as raw word embeddings (N, L, width) with their mask (N, L).

        ``g(P)``: the text tower of the backbone's kind on ``P`` (see :class:`TextTower`): for BERT
        ``proj(pool(BERT(inputs_embeds=P, attention_mask=mask)))``, for CLIP's own transformer
        ``ln_final(transformer(P + pos))`` at the end token, projected. Gradients flow to
        ``embeds``; the tower's own weights are frozen.
        """
        if embeds.shape[1] > self.context_length:
            raise BackboneError(
                f"prompt of {embeds.shape[1]} tokens exceeds the backbone's context length {self.context_length}"
            )
        mask = attention_mask.to(self.device).long()
        with self.autocast():
            feats = self._text.encode_embeds(embeds.to(self.device, self.dtype), mask).float()
        return F.normalize(feats, dim=-1) if normalize else feats


def local_text_config(folder: Path) -> dict | None:
    """For a local-dir model whose HF text config sits in the folder, point the text tower at it.

    open_clip builds an HF text tower with ``AutoConfig.from_pretrained(text_cfg.hf_model_name)``;
    a folder carrying its own ``config.json`` is made self-contained (movable, offline) this way.
    """
    cfg_path = folder / "open_clip_config.json"
    if not (folder / "config.json").is_file() or not cfg_path.is_file():
        return None
    cfg = json.loads(cfg_path.read_text())
    text_cfg = dict(cfg.get("model_cfg", {}).get("text_cfg", {}))
    if not text_cfg.get("hf_model_name"):
        return None
    text_cfg["hf_model_name"] = str(folder)
    text_cfg["hf_model_pretrained"] = False  # the full open_clip checkpoint is loaded afterwards
    return text_cfg


WEIGHT_PATTERNS = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.bin",
    "*.safetensors",
    "*.bin",
    "*.pth",
)


def find_weights(folder: Path) -> Path | None:
    """The weights file of an open_clip model folder (open_clip's own names first), or None."""
    for pattern in WEIGHT_PATTERNS:
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    return None


def load_recorded_backbone(spec: str, source: str | Path, device: str | torch.device = "cpu") -> Backbone:
    """:func:`load_backbone` of the backbone a run recorded (``source``: its file); when it cannot
    be loaded there any more (a moved model folder), the error says how to point at the new place."""
    try:
        return load_backbone(spec, device=device)
    except BackboneError as err:
        raise BackboneError(
            f"{err} (the backbone recorded by {source}; if the model folder moved, pass "
            "--backbone local-dir:NEW_PLACE)"
        ) from err


def load_backbone(spec: str = DEFAULT_BACKBONE, device: str | torch.device = "cpu") -> Backbone:
    """Load and freeze a backbone from a spec string (see module docstring)."""
    import open_clip
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    name = resolve_spec(spec)
    kwargs: dict = {}
    checkpoint = None
    if name.startswith("local-dir:"):
        folder = Path(name.removeprefix("local-dir:")).expanduser().resolve()
        if not (folder / "open_clip_config.json").is_file():
            raise BackboneError(f"{folder}: not an open_clip model folder (open_clip_config.json missing)")
        name = f"local-dir:{folder}"
        override = local_text_config(folder)
        if override is not None:
            kwargs["text_cfg"] = override
        checkpoint = find_weights(folder)
        if checkpoint is None:
            raise BackboneError(f"{folder}: no weights file (*.safetensors, *.bin, *.pth) found")
    # Without a reachable hub, load from the local cache only: fail in seconds, not after retries.
    offline = name.startswith("hf-hub:") and not _hub_reachable()
    try:
        with _hub_offline() if offline else contextlib.nullcontext():
            model, _, _ = open_clip.create_model_and_transforms(name, device=device, **kwargs)
            tokenizer = open_clip.get_tokenizer(name)
    except (OSError, RuntimeError, ValueError, ConnectionError) as err:
        if name.startswith("hf-hub:"):
            raise BackboneError(_offline_help(name, err)) from err
        raise BackboneError(f"could not load backbone {name!r}: {err}") from err
    tower = text_tower(model, tokenizer, name)
    model.requires_grad_(False)
    _pin_eval(model)
    pcfg = open_clip.get_model_preprocess_cfg(model)
    size = pcfg.get("size", 224)
    size = int(size if isinstance(size, int) else size[0])
    return Backbone(
        model=model,
        tokenizer=tokenizer,
        name=name,
        image_size=size,
        mean=tuple(pcfg.get("mean", OPENAI_DATASET_MEAN)),
        std=tuple(pcfg.get("std", OPENAI_DATASET_STD)),
        checkpoint=str(checkpoint) if checkpoint is not None else None,
        tower=tower,
    )
