"""Write a BiomedCLIP-shaped (or OpenAI-CLIP-shaped) open_clip model with random weights to a folder.

Used by tests (``size="tiny"``: a few thousand parameters, CPU-fast) and by speed benchmarks
(``size="full"``: the real BiomedCLIP architecture, timm ViT-B/16 + BERT-base with CLS pooling and
an MLP projection 768->640->512, context 256, vocabulary of 30522 entries). The folder loads
through open_clip's ``local-dir:`` path exactly like a downloaded BiomedCLIP copy:

    open_clip_config.json   model_cfg + preprocess_cfg
    open_clip_model.safetensors
    config.json             the BERT text tower's Hugging Face config
    vocab.txt, tokenizer_config.json, ...   the word-piece tokenizer

``text="native"`` writes an ``open_clip.model.CLIP`` instead, with open_clip's own causal text
transformer (OpenAI CLIP's layout: byte-pair vocabulary of 49408, context 77, end-token pooling,
linear projection) and the same image tower. Its tokenizer is open_clip's ``SimpleTokenizer``,
whose vocabulary ships with open_clip, so the folder holds only the config and the weights.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable
from pathlib import Path
from typing import TypedDict

import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from kmat.errors import ConfigError
from kmat.utils.io import atomic_save_safetensors

CLIP_MEAN, CLIP_STD = OPENAI_DATASET_MEAN, OPENAI_DATASET_STD  # BiomedCLIP's preprocessing
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# A small English + medical word list so that typical prompts tokenise into whole words; any other
# lower-case word still tokenises through the single-letter word pieces.
BASE_WORDS = """
a an the of in on at to with and or no not is are was be this that its it as by for from into
photo image picture scan view showing shows seen appears appear typical lesion mass finding
normal benign malignant tumor tumour cancer carcinoma nevus melanoma keratosis basal squamous cell
seborrheic actinic melanocytic miscellaneous clinical dermoscopy dermoscopic skin breast chest
mammography mammogram ultrasound sonography ct x ray xray radiograph radiography covid covid19
pneumonia common lung lungs opacity opacities ground glass consolidation round oval irregular
smooth spiculated margin margins border borders homogeneous heterogeneous texture bright dark
shadow speckle blur sharp contrast high low end modality class category diagnosis healthy
tissue structure pattern pigment network dots globules streaks vessels blue white brown black
red pink color colour uniform asymmetric symmetric small large round circumscribed calcification
calcifications echogenic hypoechoic anechoic posterior acoustic enhancement shadowing
bilateral peripheral lower zone hazy clear fields photograph close up surface scale crust
ulcer ulceration raised flat papule plaque nodule patch macule elevated shiny pearly
""".split()


def build_vocab(extra_words: Iterable[str] = (), size: int | None = None) -> list[str]:
    """Word-piece vocabulary: specials, punctuation, digits, letters, ``##`` pieces, then words."""
    vocab: list[str] = list(SPECIAL_TOKENS)
    seen = set(vocab)

    def add(tok: str) -> None:
        if tok not in seen:
            seen.add(tok)
            vocab.append(tok)

    for ch in string.punctuation + string.digits + string.ascii_lowercase:
        add(ch)
    for ch in string.digits + string.ascii_lowercase:
        add("##" + ch)
    for w in list(BASE_WORDS) + [w.lower() for w in extra_words]:
        if w and all(c in string.ascii_lowercase + string.digits for c in w):
            add(w)
    if size is not None:
        i = 0
        while len(vocab) < size:
            add(f"[unused{i}]")
            i += 1
    return vocab


class BertSize(TypedDict):
    """The ``BertConfig`` keyword arguments that set the size of the text tower."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int


ARCHS: dict[str, tuple[dict[str, object], BertSize, int, int]] = {
    # name: (vision_cfg, text BERT config kwargs, embed_dim, context_length)
    "tiny": (
        {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16, "mlp_ratio": 2.0},
        {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 128,
        },
        24,
        64,
    ),
    "demo": (
        {"image_size": 48, "patch_size": 8, "width": 64, "layers": 4, "head_width": 32, "mlp_ratio": 2.0},
        {
            "hidden_size": 96,
            "num_hidden_layers": 3,
            "num_attention_heads": 3,
            "intermediate_size": 192,
            "max_position_embeddings": 128,
        },
        64,
        64,
    ),
    "reduced": (
        {
            "timm_model_name": "vit_small_patch16_224",
            "timm_model_pretrained": False,
            "timm_pool": "",
            "timm_proj": "linear",
            "image_size": 224,
        },
        {
            "hidden_size": 384,
            "num_hidden_layers": 6,
            "num_attention_heads": 6,
            "intermediate_size": 1536,
            "max_position_embeddings": 512,
        },
        256,
        256,
    ),
    "full": (
        {
            "timm_model_name": "vit_base_patch16_224",
            "timm_model_pretrained": False,
            "timm_pool": "",
            "timm_proj": "linear",
            "image_size": 224,
        },
        {
            "hidden_size": 768,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "intermediate_size": 3072,
            "max_position_embeddings": 512,
        },
        512,
        256,
    ),
}


TEXT_KINDS = ("hf", "native")

# open_clip's own text transformer per size: (width, heads, layers); OpenAI CLIP's vocabulary and context
NATIVE_TEXT: dict[str, tuple[int, int, int]] = {
    "tiny": (32, 2, 2),
    "demo": (96, 3, 3),
    "reduced": (256, 4, 6),
    "full": (512, 8, 12),  # OpenAI CLIP ViT-B/16's text transformer
}
CLIP_VOCAB_SIZE, CLIP_CONTEXT_LENGTH = 49408, 77


def _native_text_cfg(size: str) -> dict[str, object]:
    width, heads, layers = NATIVE_TEXT[size]
    return {
        "context_length": CLIP_CONTEXT_LENGTH,
        "vocab_size": CLIP_VOCAB_SIZE,
        "width": width,
        "heads": heads,
        "layers": layers,
    }


def write_tiny_biomedclip(
    folder: str | Path,
    size: str = "tiny",
    seed: int = 0,
    extra_words: Iterable[str] = (),
    state_dict: dict | None = None,
    text: str = "hf",
) -> Path:
    """Write a random-weight BiomedCLIP-shaped open_clip model to ``folder`` and return it.

    ``size``: ``tiny`` (tests), ``reduced`` (ViT-S/16 + 6-layer BERT), ``full`` (BiomedCLIP's own
    architecture). ``extra_words`` extend the vocabulary. ``state_dict`` (optional) replaces the
    random weights (used to save a trained demo backbone). ``text="native"``: an OpenAI-CLIP-shaped
    model instead (open_clip's own text transformer, see the module docstring; ``extra_words`` are
    not needed: the byte-pair vocabulary covers any text).
    """
    import open_clip

    if size not in ARCHS:
        raise ConfigError(f"size must be one of {sorted(ARCHS)}, got {size!r}")
    if text not in TEXT_KINDS:
        raise ConfigError(f"text must be one of {TEXT_KINDS}, got {text!r}")
    vision_cfg, bert_kwargs, embed_dim, context_length = ARCHS[size]
    folder = Path(folder).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if text == "native":
        model_cfg = {
            "embed_dim": embed_dim,
            "vision_cfg": dict(vision_cfg),
            "text_cfg": _native_text_cfg(size),
        }
        torch.manual_seed(seed)
        return _save(folder, open_clip.CLIP(**json.loads(json.dumps(model_cfg))), model_cfg, state_dict)

    from transformers import BertConfig

    vocab = build_vocab(extra_words, size=30522 if size == "full" else None)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok_cfg = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": True,
        "model_max_length": context_length,
        "unk_token": "[UNK]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2))

    bert_cfg = BertConfig(vocab_size=len(vocab), pad_token_id=0, **bert_kwargs)
    bert_cfg.save_pretrained(str(folder))

    text_cfg = {
        "hf_model_name": str(folder),
        "hf_tokenizer_name": str(folder),
        "hf_proj_type": "mlp",
        "hf_pooler_type": "cls_last_hidden_state_pooler",
        "context_length": context_length,
    }
    model_cfg = {"embed_dim": embed_dim, "vision_cfg": dict(vision_cfg), "text_cfg": text_cfg}
    torch.manual_seed(seed)
    build_cfg = json.loads(json.dumps(model_cfg))
    build_cfg["text_cfg"]["hf_model_pretrained"] = False
    model = open_clip.CustomTextCLIP(**build_cfg)
    return _save(folder, model, model_cfg, state_dict)


def _save(folder: Path, model: torch.nn.Module, model_cfg: dict, state_dict: dict | None) -> Path:
    """Write ``model`` (or ``state_dict`` loaded into it) and its open_clip config to ``folder``."""
    if state_dict is not None:
        model.load_state_dict(state_dict)
    atomic_save_safetensors(  # no checksum metadata: the file's sha256 is the backbone's identity
        folder / "open_clip_model.safetensors",
        {k: v.detach().cpu() for k, v in model.state_dict().items()},
        checksum=False,
    )
    cfg = {
        "model_cfg": model_cfg,
        "preprocess_cfg": {"mean": list(CLIP_MEAN), "std": list(CLIP_STD)},
    }
    (folder / "open_clip_config.json").write_text(json.dumps(cfg, indent=2))
    return folder
