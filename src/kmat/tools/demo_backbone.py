"""The demo backbone: a small BiomedCLIP-family model pre-trained on SynthMed image-caption pairs.

Architecture (``kmat.tools.tinymodel.ARCHS["demo"]``): open_clip ViT image tower (48 px, patch 8, width
64, 4 layers) and a BERT text tower (3 layers, width 96) with CLS pooling and an MLP projection
to 64-d, its own word-piece vocabulary. It is trained contrastively (symmetric InfoNCE, learnable
temperature) on images of **both** modalities of **both** SynthMed pairs
(:func:`kmat.tools.synthpairs.pairs`: mammogram -> sonogram and dermoscopy image -> clinical
photograph), ``n_per_class`` images per class and modality of each pair, drawn from a pre-training
pool disjoint from the benchmark's splits, in batches of one pair each (so that a batch's negatives
share its physics), with captions generated from each image's rendered attributes; a fifth of the
captions name the class (2 % are only the class name, as terse figure labels are, and 3 % are short
"modality + class name" captions). The result is saved in open_clip ``local-dir`` format and
loaded through the same code path as BiomedCLIP.

Build it with ``kmat demo-backbone --out DIR`` (seeded, documented defaults, one CPU thread: about
five minutes on a 2-core CPU). The package ships the copy built with the defaults
(``kmat/assets/demo_backbone``, 1.8 MB); without it, ``kmat demo`` builds it on first use into
``$KMAT_CACHE/demo_backbone-v2`` and reuses it afterwards.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from kmat.errors import BackboneError, ConfigError, OutputError
from kmat.tools.synthmed import SynthPair
from kmat.tools.synthpairs import pairs
from kmat.utils.cache import cache_dir, cache_needed_error, content_hash
from kmat.utils.progress import progress

VERSION = "v2"  # v2: both SynthMed pairs (v1: mammogram -> sonogram only)
DEFAULTS = {"seed": 0, "n_per_class": 250, "epochs": 40, "batch_size": 64, "lr": 2e-3, "weight_decay": 0.05}

log = logging.getLogger(__name__)


def _vocabulary(synth_pairs: list[SynthPair]) -> list[str]:
    words: set[str] = {"a", "photo", "of"}
    for pair in synth_pairs:
        texts = [t for block in pair.descriptions().values() for sents in block.values() for t in sents]
        texts += list(pair.classnames.values()) + [shown for _, shown in pair.modalities.values()]
        for t in texts:
            words.update(re.findall(r"[a-z0-9]+", t.lower()))
        rng = np.random.default_rng(0)
        for cls in pair.classes:
            for role in ("high", "low"):
                for i in range(40):
                    _, a = pair.sample_image(0, role, cls, i, pool="vocab", size=16)
                    words.update(re.findall(r"[a-z0-9]+", pair.caption(a, rng, True, False).lower()))
    return sorted(words)


def build_demo_backbone(
    folder: str | Path,
    seed: int = 0,
    n_per_class: int = 250,
    epochs: int = 40,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 0.05,
    show_progress: bool = True,
) -> Path:
    """Pre-train the demo backbone and write it to ``folder`` (see module docstring).

    It runs on one CPU thread (restored afterwards): float reductions split over threads sum in
    another order, so a build with another number of threads gives other weights. This way a
    rebuild with the defaults gives the shipped weights (same library versions), at some cost in
    speed: about 5 minutes here, against about 3.7 on two threads (2-core CPU).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _build(folder, seed, n_per_class, epochs, batch_size, lr, weight_decay, show_progress)
    finally:
        torch.set_num_threads(threads)


def _build(
    folder: str | Path,
    seed: int,
    n_per_class: int,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    show_progress: bool,
) -> Path:
    import open_clip

    from kmat.backbone import local_text_config
    from kmat.data.images import normalize
    from kmat.tools.tinymodel import CLIP_MEAN, CLIP_STD, write_tiny_biomedclip

    for name, value in (("n_per_class", n_per_class), ("epochs", epochs), ("batch_size", batch_size)):
        if value < 1:
            raise ConfigError(f"demo backbone: {name} must be >= 1, got {value}")
    t0 = time.perf_counter()
    folder = Path(folder).expanduser().resolve()
    synth_pairs = list(pairs().values())
    words = _vocabulary(synth_pairs)
    write_tiny_biomedclip(folder, size="demo", seed=seed, extra_words=words)
    model, _, _ = open_clip.create_model_and_transforms(
        f"local-dir:{folder}", text_cfg=local_text_config(folder)
    )
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)

    images: list[torch.Tensor] = []
    attrs: list[tuple[SynthPair, Any]] = []
    members: list[np.ndarray] = []  # the image indices of each pair
    for pair in synth_pairs:
        first = len(attrs)
        for role in ("high", "low"):
            for cls in pair.classes:
                for i in range(n_per_class):
                    img, a = pair.sample_image(seed, role, cls, i, pool="pretrain")
                    images.append(normalize(img, CLIP_MEAN, CLIP_STD))
                    attrs.append((pair, a))
        members.append(np.arange(first, len(attrs)))
    images_t = torch.stack(images)
    per_pair = [max(1, len(m) // batch_size) for m in members]
    total = sum(per_pair) * epochs
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay
    )
    model.train()
    bar = progress(total=total, desc="pre-training demo backbone", unit="step", disable=not show_progress)
    step = 0
    for _epoch in range(epochs):
        # every batch comes from one pair (its negatives are of the same physics), in a random order
        batches = []
        for m, k in zip(members, per_pair, strict=True):
            perm = rng.permutation(m)
            batches += [perm[s * batch_size : (s + 1) * batch_size] for s in range(k)]
        for b in rng.permutation(len(batches)):
            idx = torch.from_numpy(batches[b])
            caps = []
            for i in idx.tolist():
                u = rng.random()  # 2 % the class name alone, 3 % short "modality + class" captions,
                pair, a = attrs[i]  # 15 % full with class, 80 % without
                if u < 0.02:
                    name = pair.classnames[a.cls]
                    caps.append(f"{name}." if rng.random() < 0.5 else f"a {name}.")
                else:
                    caps.append(pair.caption(a, rng, u < 0.2, u < 0.05))
            ids = tokenizer(caps)
            ids = ids[:, : int((ids != 0).any(0).nonzero().max()) + 1]
            warm = min(1.0, (step + 1) / (0.05 * total))
            for g in opt.param_groups:
                g["lr"] = lr * warm * 0.5 * (1 + math.cos(math.pi * step / total))
            img_f = F.normalize(model.encode_image(images_t[idx]), dim=-1)
            txt_f = F.normalize(model.encode_text(ids), dim=-1)
            logits = model.logit_scale.exp().clamp(max=100) * img_f @ txt_f.T
            target = torch.arange(len(idx))
            loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            bar.set_postfix(loss=f"{loss.item():.3f}")
            bar.update(1)
    bar.close()
    model.eval()
    write_tiny_biomedclip(folder, size="demo", seed=seed, extra_words=words, state_dict=model.state_dict())
    info = {
        "version": VERSION,
        "pairs": [p.task for p in synth_pairs],
        "seed": seed,
        "n_per_class": n_per_class,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "final_loss": float(loss.item()),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (folder / "kmat_demo_backbone.json").write_text(json.dumps(info, indent=2))
    return folder


def shipped_demo_backbone() -> Path | None:
    """The copy shipped in the package, if it was built by this builder with :data:`DEFAULTS`."""
    from kmat.backbone import shipped_demo_backbone as shipped_folder

    try:
        folder = shipped_folder()
    except BackboneError:
        return None
    info = folder / "kmat_demo_backbone.json"
    if not info.is_file():
        return None
    meta = json.loads(info.read_text())
    return (
        folder
        if meta.get("version") == VERSION and all(meta.get(k) == v for k, v in DEFAULTS.items())
        else None
    )


def demo_backbone_dir(show_progress: bool = True, **overrides) -> Path:
    """The demo backbone: the shipped copy, else built on first use (about five minutes on a 2-core
    CPU) and cached. ``overrides`` of :data:`DEFAULTS` (e.g. a tiny ``n_per_class`` for tests) are
    built into their own cache folder. A build is logged when it starts.
    """
    params = {**DEFAULTS, **overrides}
    if params == DEFAULTS and (shipped := shipped_demo_backbone()) is not None:
        return shipped
    name = (
        f"demo_backbone-{VERSION}"
        if params == DEFAULTS
        else f"demo_backbone-{VERSION}-{content_hash(params)}"
    )
    folder = cache_dir() / name
    if not (folder / "kmat_demo_backbone.json").is_file():
        tmp = folder.with_name(folder.name + ".partial")
        log.info(
            f"[backbone] pre-training a demo backbone on captions of both SynthMed pairs into {folder} "
            "(once; cached) ..."
        )
        import shutil

        try:
            if tmp.exists():
                shutil.rmtree(tmp)
            build_demo_backbone(tmp, show_progress=show_progress, **params)
            if folder.exists():
                shutil.rmtree(folder)
            tmp.rename(folder)  # never leave a half-built model where a finished one is expected
        except (
            OSError,
            OutputError,
        ) as err:  # a read-only or full cache: there is nowhere to keep the backbone
            raise cache_needed_error(folder, err) from err
    return folder
