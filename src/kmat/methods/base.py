"""What every method provides to the one training loop (:mod:`kmat.engine`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kmat.backbone import Backbone
from kmat.data.task import Task
from kmat.errors import CheckpointError, ConfigError
from kmat.methods.config import MethodConfig, PublishedDefaults

C = TypeVar("C", bound=MethodConfig)
M = TypeVar("M", bound="Method")
TrainView = Callable[[int], tuple[Tensor, Tensor]]  # epoch -> (features, labels) of the few-shot shots


@dataclass
class MethodContext:
    """What a method may use: the frozen backbone, the task, and lazily computed text knowledge.

    Without a task (``task=None``: re-building a finished run to classify new images, see
    :class:`Deployment`) the class names and modality display names are given instead, and asking
    for the task's descriptions is a :class:`~kmat.errors.ConfigError`."""

    backbone: Backbone
    task: Task | None
    min_descriptions: int = 1
    _cache: dict = field(default_factory=dict, repr=False)
    names: list[str] | None = None  # class names used in prompts, when there is no task
    display_names: list[str] | None = None  # modality display names (high, low), when there is no task

    @property
    def classnames(self) -> list[str]:
        if self.task is not None:
            return self.task.classnames
        if self.names is None:
            raise ConfigError("a method context needs a task or the class names")
        return self.names

    @property
    def modality_names(self) -> list[str]:
        """Display names of the two modalities, high-end first (used inside prompts)."""
        if self.task is not None:
            return [self.task.high.display_name, self.task.low.display_name]
        return list(self.display_names or ["high-end image", "low-end image"])

    def require_task(self) -> Task:
        if self.task is None:
            raise ConfigError("this method needs the task's descriptions, which a deployed run does not have")
        return self.task

    def descriptions(self) -> dict[str, dict[str, list[str]]]:
        if "descriptions" not in self._cache:
            from kmat.knowledge.descriptions import load_descriptions

            self._cache["descriptions"] = load_descriptions(self.require_task(), self.min_descriptions)
        return self._cache["descriptions"]

    @torch.no_grad()
    def prototypes(self) -> Tensor:
        """``tbar[m, i] = norm(mean_k norm(g(d_{i,k}^m)))`` for m in (high, low): shape (2, C, D)."""
        if "prototypes" not in self._cache:
            from kmat.knowledge.prototypes import description_prototypes

            self._cache["prototypes"] = description_prototypes(
                self.backbone, self.require_task(), self.descriptions()
            )
        return self._cache["prototypes"]

    @torch.no_grad()
    def zeroshot_embeddings(self, template: str = "a photo of a {classname}.") -> Tensor:
        """Frozen ``t_c = norm(encode_text(template(classname)))``, shape (C, D)."""
        key = ("zs", template)
        if key not in self._cache:
            texts = [template.format(classname=c) for c in self.classnames]
            self._cache[key] = self.backbone.encode_texts(texts).to(self.backbone.device)
        return self._cache[key]


@dataclass
class Deployment:
    """A finished run, ready to classify new images: what its folder holds and the frozen backbone.

    Read by :mod:`kmat.run.predict` from ``result.json``, ``class_embeddings.safetensors`` and
    ``head.safetensors``; no task folder and no training image is needed. ``config`` is the run's
    resolved method config (``None`` when the run's method is not registered in this process: then
    only the class embeddings can be used)."""

    backbone: Backbone
    classnames: list[str]  # as used in the prompts (the task's classnames)
    modality_names: list[str]  # display names, high-end first
    config: MethodConfig | None
    embeddings: dict[str, Tensor]  # role -> (C, D) class embeddings
    head: dict[str, Tensor]  # the method's other deployment tensors (Method.head)
    logit_scale: float
    _cache: dict = field(default_factory=dict, repr=False)


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

    # ------------------------------------------------------------------ deployment
    def head(self) -> dict[str, Tensor]:
        """Tensors that classifying a new image needs besides the frozen backbone and the class
        embeddings (a cache of features, an adapter's or a meta-net's weights), saved in the run's
        ``head.safetensors`` and given back to :meth:`deployed_logits`. Keys are names of the
        method's parameters or buffers (``named_parameters``/``named_buffers``), so that
        :meth:`load_head` / :meth:`rebuilt` restore them. Default: none."""
        return {}

    @classmethod
    def deployed_logits(cls, dep: Deployment, feats: Tensor, role: str) -> Tensor:
        """Logits of image features ``feats`` (B, D) for modality ``role``, from a finished run's
        saved tensors alone; equal to the trained method's :meth:`predict_logits` (the method
        battery checks it). Default: ``s * f . t_role`` with the saved class embeddings."""
        t = dep.embeddings[role].to(feats.device, feats.dtype)
        return dep.logit_scale * feats @ t.T

    @classmethod
    def rebuilt(cls: type[M], dep: Deployment) -> M:
        """The method re-built from a run's saved head, without the task; made once per deployment."""
        key = ("rebuilt", cls)
        if key not in dep._cache:
            if dep.config is None:
                raise CheckpointError(f"method {cls.name!r} has no configuration to re-build it from")
            ctx = MethodContext(dep.backbone, None, names=dep.classnames, display_names=dep.modality_names)
            method = cls(ctx, dep.config)
            method.load_head(dep.head)
            dep._cache[key] = method.eval()
        return dep._cache[key]

    def load_head(self, head: dict[str, Tensor]) -> None:
        """Copy a saved head (:meth:`head`: tensors named as the method's parameters and buffers)
        into this method; a tensor it lacks, or one of another shape, is a :class:`CheckpointError`."""
        own = {**dict(self.named_parameters()), **dict(self.named_buffers())}
        unknown = sorted(set(head) - set(own))
        if unknown:
            raise CheckpointError(f"the run's head holds tensors {unknown} that {self.name!r} does not have")
        lacking = sorted(set(self.head()) - set(head))
        if lacking:
            raise CheckpointError(
                f"the run's head lacks {lacking} (head.safetensors missing or incomplete): "
                "train the run again to write it"
            )
        with torch.no_grad():
            for name, value in head.items():
                if own[name].shape != value.shape:
                    raise CheckpointError(
                        f"the run's {name} is {tuple(value.shape)}, {self.name!r} here makes it "
                        f"{tuple(own[name].shape)} (another backbone architecture?)"
                    )
                own[name].copy_(value.to(own[name].device))

    # ------------------------------------------------------------------ training hooks
    def fit(self, train: TrainView, val: tuple[Tensor, Tensor] | None) -> dict[str, Any]:
        """Called once before the training loop with the few-shot training features (``train(e)``:
        view ``e``, as the loop gets them) and the features and labels of the run's few-shot
        validation subset (min(K, 4) per class of the high-end validation split, ``fewshot_val.csv``;
        None without a validation split; no low-end image ever reaches a method). A method fitted in
        closed form, or one that builds a cache from the shots, does it here. Returns what the
        run records of the fit (``result.json``: ``fit``), e.g. a regularisation chosen on ``val``.
        Default: nothing."""
        return {}

    def after_training(self, val: tuple[Tensor, Tensor] | None) -> dict[str, Any]:
        """Called once after the training loop with the few-shot validation subset's features and
        labels (as :meth:`fit`). A method that chooses hyper-parameters on the validation split after
        training (Tip-Adapter-F's alpha and beta) does it here; what it returns is added to the
        run's record of the fit (``result.json``: ``fit``). Default: nothing."""
        return {}

    def optimizer(self, params: Sequence[Tensor], recipe: MethodConfig) -> torch.optim.Optimizer:
        """The optimiser of the one loop over ``params`` (the loop sets every group's learning
        rate each epoch from the recipe's schedule). Default: SGD with the recipe's momentum and
        weight decay; a method whose published recipe uses another optimiser (Tip-Adapter-F:
        AdamW) overrides this."""
        return torch.optim.SGD(
            params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
        )

    @classmethod
    def views_needed(cls, cfg: MethodConfig, augment: bool) -> int:
        """How many training views a run of this method reads: one per epoch with augmentation
        (one in all without); a method that does not train but overrides :meth:`fit` reads view 0."""
        n = int(cfg.epochs) if cls.trains else 0
        if cls.fit is not Method.fit:
            n = max(n, 1)
        return n if augment else min(1, n)

    def backward(self, terms: dict[str, Tensor]) -> None:
        """Accumulate the gradients of a step from its loss terms (the loop zeroes them before and
        steps the optimiser after). Default: ``terms["total"].backward()``; a method that shapes
        its gradient (ProGrad's projection) overrides this."""
        terms["total"].backward()


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """``L_CE = -1/B sum_b log softmax(s * f_b . t)[y_b]``."""
    return F.cross_entropy(logits, labels.to(logits.device))
