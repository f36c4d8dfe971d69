"""What every method provides to the one training loop (:mod:`kmat.engine`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kmat.backbone import Backbone
from kmat.data.task import Task
from kmat.methods.config import MethodConfig, PublishedDefaults

C = TypeVar("C", bound=MethodConfig)


@dataclass
class MethodContext:
    """What a method may use: the frozen backbone, the task, and lazily computed text knowledge."""

    backbone: Backbone
    task: Task
    min_descriptions: int = 1
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def classnames(self) -> list[str]:
        return self.task.classnames

    @property
    def modality_names(self) -> list[str]:
        """Display names of the two modalities, high-end first (used inside prompts)."""
        return [self.task.high.display_name, self.task.low.display_name]

    def descriptions(self) -> dict[str, dict[str, list[str]]]:
        if "descriptions" not in self._cache:
            from kmat.knowledge.descriptions import load_descriptions

            self._cache["descriptions"] = load_descriptions(self.task, self.min_descriptions)
        return self._cache["descriptions"]

    @torch.no_grad()
    def prototypes(self) -> Tensor:
        """``tbar[m, i] = norm(mean_k norm(g(d_{i,k}^m)))`` for m in (high, low): shape (2, C, D)."""
        if "prototypes" not in self._cache:
            from kmat.knowledge.prototypes import description_prototypes

            self._cache["prototypes"] = description_prototypes(self.backbone, self.task, self.descriptions())
        return self._cache["prototypes"]

    @torch.no_grad()
    def zeroshot_embeddings(self, template: str = "a photo of a {classname}.") -> Tensor:
        """Frozen ``t_c = norm(encode_text(template(classname)))``, shape (C, D)."""
        key = ("zs", template)
        if key not in self._cache:
            texts = [template.format(classname=c) for c in self.classnames]
            self._cache[key] = self.backbone.encode_texts(texts).to(self.backbone.device)
        return self._cache[key]


class Method(nn.Module, Generic[C]):
    """A prompt-learning method: learnable parameters, loss terms, and class logits per modality.

    The contract with the one training loop (:mod:`kmat.engine`): ``Config`` is the method's
    :class:`~kmat.methods.config.MethodConfig` subclass (recipe + its own options); ``loss`` returns
    the named loss terms of a batch as tensors, ``"total"`` being the one to minimise (the engine
    detaches and averages the others for the history); ``class_embeddings`` gives the normalised
    class embeddings per modality role. Register a subclass with :func:`kmat.methods.register`.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    trains: ClassVar[bool] = True  # False: nothing to learn (zero-shot)
    text_dropout: ClassVar[bool] = False  # True: text tower dropout on while training
    per_image_prompts: ClassVar[bool] = False  # True: prompts depend on the image (no fixed class embeddings)
    # published defaults per kind of data, keyed by the *training* (high-end) dataset key
    task_defaults: ClassVar[dict[str, PublishedDefaults]] = {}

    def __init__(self, ctx: MethodContext, cfg: C) -> None:
        super().__init__()
        self.ctx = ctx
        self.cfg = cfg

    @property
    def backbone(self) -> Backbone:
        return self.ctx.backbone

    @property
    def logit_scale(self) -> float:
        s = self.cfg.logit_scale
        return float(s) if s is not None else self.backbone.logit_scale

    def loss(self, feats: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Named loss terms on a batch of high-end image features; ``"total"`` is minimised."""
        raise NotImplementedError

    def class_embeddings(self) -> dict[str, Tensor]:
        """Normalised class embeddings per modality role ("high", "low"), each (C, D)."""
        raise NotImplementedError

    def logits(self, feats: Tensor, role: str) -> Tensor:
        """Class logits ``s * f . t`` of features for modality role "high" or "low"."""
        t = self.class_embeddings()[role]
        return self.logit_scale * feats.to(t.device) @ t.T

    @torch.no_grad()
    def predict_logits(self, feats: Tensor, role: str, batch_size: int = 1024) -> Tensor:
        """Logits of a whole test split; class embeddings are computed once (override if per-image)."""
        t = self.class_embeddings()[role]
        chunks = [
            self.logit_scale * feats[i : i + batch_size].to(t.device) @ t.T
            for i in range(0, len(feats), batch_size)
        ]
        return torch.cat(chunks).cpu() if chunks else torch.empty(0, t.shape[0])

    def learnable_state(self) -> dict[str, Tensor]:
        return {k: p.detach().cpu() for k, p in self.named_parameters() if p.requires_grad}


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """``L_CE = -1/B sum_b log softmax(s * f_b . t)[y_b]``."""
    return F.cross_entropy(logits, labels.to(logits.device))
