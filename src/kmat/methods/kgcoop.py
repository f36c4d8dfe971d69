"""KgCoOp (Yao et al., CVPR 2023) on BiomedCLIP (docs/methods.md, "KgCoOp").

``L = CE(s * f . t, y) + W * (1 - mean_c cos(t_c, t_c^zs))`` with ``t_c^zs`` the frozen zero-shot
embedding of "a photo of a {classname}.". CoOp prompts; W = 0 is exactly CoOp.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from kmat.methods import register
from kmat.methods.base import cross_entropy
from kmat.methods.config import option
from kmat.methods.coop import SharedPromptConfig, SharedPromptMethod
from kmat.methods.published import published_task_defaults


@dataclass
class KgCoOpConfig(SharedPromptConfig):
    batch_size: int = 128  # published; the KgCoOp author recommends 32 for few-shot
    W: float = option(
        1.0,
        "weight W of the knowledge-guided term 1 - mean_c cos(t_c, t_c^zs) (official code default)",
        min=0,
    )
    zs_template: str = option(
        "a photo of a {classname}.", "hand-written prompt of the zero-shot embeddings t^zs"
    )


def kg_loss(t: Tensor, t_zs: Tensor) -> Tensor:
    """Knowledge-guided term ``1 - mean_c cos(t_c, t_c^zs)`` (inputs L2-normalised, (C, D))."""
    return 1.0 - (t * t_zs.to(t.dtype)).sum(dim=-1).mean()


@register
class KgCoOp(SharedPromptMethod[KgCoOpConfig]):
    name = "kgcoop"
    Config = KgCoOpConfig
    task_defaults = published_task_defaults(
        dermamnist={"W": 8.0},
        covid={"W": 1.0},
    )

    def loss(self, feats: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """``L = CE + W * (1 - mean_c cos(t_c, t_c^zs))``."""
        z, t = self.ce_logits(feats)
        ce = cross_entropy(z, labels)
        kg = kg_loss(t, self.ctx.zeroshot_embeddings(self.cfg.zs_template))
        total = ce + self.cfg.W * kg
        return {"ce": ce, "kg": kg, "total": total}
