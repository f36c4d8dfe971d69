"""Description prototypes: the fixed anchors of K-MaT's space-anchoring term."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kmat.backbone import Backbone
from kmat.data.task import Task


@torch.no_grad()
def description_prototypes(backbone: Backbone, task: Task, descriptions: dict[str, dict[str, list[str]]]) -> Tensor:
    """``tbar[m, i] = norm(mean_k norm(g(d_{i,k}^m)))`` for m in (high, low): shape (2, C, D)."""
    out = []
    for mod in (task.high, task.low):
        rows = []
        for c in task.classes:
            feats = backbone.encode_texts(descriptions[mod.name][c])  # already L2-normalised
            rows.append(F.normalize(feats.mean(dim=0), dim=-1))
        out.append(torch.stack(rows))
    return torch.stack(out).to(backbone.device)
