"""Description prototypes: the fixed anchors of K-MaT's space-anchoring term.

``tbar[m, i] = norm(mean_k norm(g(d_{i,k}^m)))``. They are computed once per backbone and set of
descriptions and cached on disk under ``$KMAT_CACHE/prototypes/``, keyed by the backbone identity
(name + weights hash) and the hash of the descriptions themselves. Entries carry the sha256 of their
values; a damaged one (unreadable, checksum mismatch, non-finite values, wrong shape) is recomputed
and rewritten with a warning that names it. An unusable cache is skipped with one warning.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor

from kmat.backbone import Backbone
from kmat.data.task import Task
from kmat.errors import OutputError
from kmat.utils.cache import cache_write_failed, content_hash, optional_cache_dir
from kmat.utils.io import DamagedFileError, atomic_save_safetensors, read_safetensors

log = logging.getLogger(__name__)


@torch.no_grad()
def compute_prototypes(backbone: Backbone, blocks: list[list[list[str]]]) -> Tensor:
    """``blocks[m][i]`` = descriptions of class i in modality m -> normalised means (M, C, D)."""
    out = []
    for mod in blocks:
        rows = [F.normalize(backbone.encode_texts(sents).mean(dim=0), dim=-1) for sents in mod]
        out.append(torch.stack(rows))
    return torch.stack(out)


def description_prototypes(
    backbone: Backbone, task: Task, descriptions: dict[str, dict[str, list[str]]], use_cache: bool = True
) -> Tensor:
    """Prototypes (2, C, D) for the task's (high, low) modalities, from the cache when possible."""
    blocks = [[descriptions[mod.name][c] for c in task.classes] for mod in (task.high, task.low)]
    key = f"{content_hash([backbone.identity(), backbone.precision])}_{content_hash(blocks)}"
    folder = optional_cache_dir("prototypes") if use_cache else None
    path = folder / f"{key}.safetensors" if folder is not None else None
    if path is not None and path.is_file():
        try:
            proto = read_safetensors(path)[0]["prototypes"]
            if proto.ndim != 3 or proto.shape[:2] != (2, len(task.classes)):
                raise DamagedFileError(f"shape {tuple(proto.shape)}, want (2, {len(task.classes)}, D)")
            return proto.to(backbone.device)
        except (DamagedFileError, OSError, KeyError) as err:
            log.warning("prototype cache entry %s is damaged (%s); recomputing it", path, err)
    proto = compute_prototypes(backbone, blocks)
    if path is not None and torch.isfinite(proto).all():
        try:
            atomic_save_safetensors(path, {"prototypes": proto.cpu()})
        except (OSError, OutputError) as err:
            cache_write_failed(path, err)
    return proto.to(backbone.device)
