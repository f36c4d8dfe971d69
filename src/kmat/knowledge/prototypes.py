"""Description prototypes: the fixed anchors of K-MaT's space-anchoring term.

``tbar[m, i] = norm(mean_k norm(g(d_{i,k}^m)))``. They are computed once per backbone and set of
descriptions and cached on disk under ``$KMAT_CACHE/prototypes/``, keyed by the backbone identity
(name + weights hash) and the hash of the descriptions themselves; a corrupt entry is recomputed.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor

from kmat.backbone import Backbone
from kmat.data.task import Task
from kmat.utils.cache import cache_dir, content_hash
from kmat.utils.io import atomic_save_safetensors

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
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    blocks = [[descriptions[mod.name][c] for c in task.classes] for mod in (task.high, task.low)]
    key = f"{content_hash([backbone.identity(), backbone.precision])}_{content_hash(blocks)}"
    path = cache_dir("prototypes") / f"{key}.safetensors" if use_cache else None
    if path is not None and path.is_file():
        try:
            proto = load_file(str(path))["prototypes"].clone()  # detach from the mapped file
            if proto.shape[:2] == (2, len(task.classes)):
                return proto.to(backbone.device)
        except (SafetensorError, OSError, KeyError) as err:
            log.warning("prototype cache entry %s unreadable (%s); recomputing", path, err)
    proto = compute_prototypes(backbone, blocks)
    if path is not None:
        atomic_save_safetensors(path, {"prototypes": proto.cpu()})
    return proto.to(backbone.device)
