"""The Python API: train a run, load a finished one, and classify images with it.

::

    import kmat

    run = kmat.train("path/to/task", method="kmat", out="runs/kmat-s1", shots=16, epochs=50)
    run = kmat.load_run("runs/kmat-s1")            # the same object, from the folder
    print(run.metrics["low"]["acc"], run.classes)
    preds = run.predict(["a.png", pil_image, tensor], modality="low")
    preds.labels, preds.probabilities              # one label and one row of probabilities per image

A :class:`Run` reads only its folder (``result.json``, ``class_embeddings.safetensors`` and, for a
method that classifies with more than class embeddings, ``head.safetensors``); the backbone is
loaded on the first :meth:`Run.predict` and kept. ``preds.score(true_labels)`` scores predictions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from kmat.backbone import Backbone, load_backbone
from kmat.errors import ConfigError
from kmat.methods import get_method
from kmat.methods.config import resolve_config
from kmat.run.artifacts import load_head
from kmat.run.config import RunConfig
from kmat.run.device import resolve_device
from kmat.run.labels import score
from kmat.run.layout import RunLayout
from kmat.run.predict import ImageInput, Prediction, predict_report
from kmat.run.predict import load_run as _read_run
from kmat.run.runner import check_backbone_identity
from kmat.run.runner import run as _run_one

__all__ = ["Predictions", "Run", "load_run", "train"]


@dataclass
class Predictions:
    """What :meth:`Run.predict` answers, one entry per image, in the order given.

    ``labels[i]`` is the predicted class of image ``i``, ``probabilities[i]`` its class
    probabilities (a float tensor of shape ``(n_images, n_classes)``, columns in ``classes`` order),
    ``names[i]`` its path, or ``<image I>`` for an image given in memory."""

    names: list[str]
    labels: list[str]
    probabilities: Tensor
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def score(self, labels: Sequence[str | int]) -> dict[str, Any]:
        """Accuracy and macro-F1 (%), per-class accuracy and the confusion matrix (rows: true
        class) against the true ``labels`` of the images (class names or indices, in order)."""
        if len(labels) != len(self):
            raise ConfigError(f"{len(labels)} label(s) for {len(self)} prediction(s)", field="labels")
        index = {c: i for i, c in enumerate(self.classes)}
        y = [self._label_index(label, index) for label in labels]
        if any(not 0 <= v < len(self.classes) for v in y):
            raise ConfigError(f"a label index is outside 0..{len(self.classes) - 1}", field="labels")
        return score(y, [index[label] for label in self.labels], self.classes)

    def _label_index(self, label: Any, index: dict[str, int]) -> int:
        """A true label as a class index: a class name, or an integer (Python, NumPy or a 0-d tensor)."""
        if isinstance(label, str):
            if label not in index:
                raise ConfigError(f"{label!r} is not a class (classes: {self.classes})", field="labels")
            return index[label]
        if not isinstance(label, bool):
            with contextlib.suppress(TypeError, ValueError, RuntimeError):
                return operator.index(label)
        raise ConfigError(
            f"{label!r} is not a class: give class names or class indices (classes: {self.classes})",
            field="labels",
        )

    def __iter__(self) -> Iterator[Prediction]:
        """Each image as a :class:`~kmat.run.predict.Prediction` (name, label, probability per class)."""
        for name, label, row in zip(self.names, self.labels, self.probabilities, strict=True):
            yield Prediction(name, label, {c: float(v) for c, v in zip(self.classes, row, strict=True)})

    def __repr__(self) -> str:
        return f"Predictions({len(self)} image(s), classes={self.classes})"


class Run:
    """A finished run folder (written by :func:`train`, ``kmat train`` or ``kmat reproduce``).

    ``device``: where :meth:`predict` encodes images (``auto``: a GPU when there is one).
    ``backbone``: a loaded :class:`~kmat.backbone.Backbone`, or a spec (``local-dir:PATH``, ...) to
    load instead of the one the run recorded (a moved model folder); its weights must be the run's
    unless ``allow_backbone_mismatch`` (then a warning). A damaged or missing run is a
    :class:`~kmat.errors.CheckpointError`.
    """

    def __init__(
        self,
        folder: str | Path,
        device: str = "auto",
        backbone: Backbone | str | None = None,
        allow_backbone_mismatch: bool = False,
    ) -> None:
        self.folder = RunLayout.of(folder).folder
        self.result, self.class_embeddings = _read_run(self.folder)
        self.device = device
        self.allow_backbone_mismatch = allow_backbone_mismatch
        self._backbone: Backbone | None = None
        self._backbone_spec: str | None = None
        self._head: dict[str, Tensor] | None = None
        if isinstance(backbone, str):
            self._backbone_spec = backbone
        elif backbone is not None:
            self._backbone = self._checked(backbone)

    # ------------------------------------------------------------------ what the run recorded
    @property
    def config(self) -> dict[str, Any]:
        """The run's configuration (every run setting, the resolved method config, the classes)."""
        return self.result["config"]

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        """Test metrics in %: ``{"high": {"acc", "macro_f1"}, "low": {...}, "h": {...}}``."""
        return self.result["metrics"]

    @property
    def classes(self) -> list[str]:
        """The class names, in the order of the probabilities' columns."""
        return list(self.config["classes"])

    @property
    def method(self) -> str:
        return str(self.result["method"])

    @property
    def task(self) -> str:
        return str(self.result["task"])

    # class_embeddings: dict role ("high", "low") -> (n_classes, dim) tensor, set in __init__

    @property
    def head(self) -> dict[str, Tensor]:
        """The method's other deployment tensors (``head.safetensors``; ``{}`` for a method that
        classifies with its class embeddings alone), read once."""
        if self._head is None:
            self._head = load_head(self.folder)
        return self._head

    # ------------------------------------------------------------------ prediction
    @property
    def backbone(self) -> Backbone:
        """The frozen backbone (loaded on first use, then kept), checked against the run's weights."""
        if self._backbone is None:
            spec = self._backbone_spec or self.config["backbone"]
            self._backbone = self._checked(load_backbone(spec, device=resolve_device(self.device)))
        return self._backbone

    def _checked(self, backbone: Backbone) -> Backbone:
        check_backbone_identity(
            backbone,
            self.config.get("backbone_identity"),
            self.folder / "result.json",
            self.allow_backbone_mismatch,
        )
        return backbone

    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        modality: str = "low",
        batch_size: int | None = None,
    ) -> Predictions:
        """Classify ``images`` with the run's prompts of ``modality`` (``"low"``: the low-end
        prompts, the deployment case; ``"high"``: the high-end ones).

        ``images``: one image or a list of them, each a file path, a PIL image or a tensor
        ``(3, H, W)`` (``uint8``, or float in [0, 1]; a ``(N, 3, H, W)`` tensor is N images). They
        are preprocessed as the run's test images were. Any unusable image is an
        :class:`~kmat.errors.ImageError` naming every one."""
        report = predict_report(
            self.folder,
            images,
            role=modality,
            backbone=self.backbone,
            batch_size=batch_size,
            loaded=(self.result, self.class_embeddings),
            head=self.head,
            allow_backbone_mismatch=True,  # checked once, when the backbone was loaded
            strict=True,
        )
        assert report.probabilities is not None
        return Predictions(
            names=[p.path for p in report.predictions],
            labels=[p.label for p in report.predictions],
            probabilities=report.probabilities,
            classes=report.classes,
        )

    def __repr__(self) -> str:
        m = self.metrics
        return (
            f"Run({str(self.folder)!r}: {self.method} on {self.task}, {self.result.get('shots')} shots, "
            f"seed {self.result.get('seed')}; low-end acc {m['low']['acc']:.1f}%, "
            f"high-end acc {m['high']['acc']:.1f}%)"
        )


def load_run(
    folder: str | Path,
    device: str = "auto",
    backbone: Backbone | str | None = None,
    allow_backbone_mismatch: bool = False,
) -> Run:
    """The finished run in ``folder`` (see :class:`Run`)."""
    return Run(folder, device=device, backbone=backbone, allow_backbone_mismatch=allow_backbone_mismatch)


_RUN_FIELDS = frozenset(f.name for f in dataclasses.fields(RunConfig))


def train(
    task: str | Path,
    method: str = "kmat",
    *,
    out: str | Path,
    backbone: Backbone | str = "biomedclip",
    overwrite: bool = False,
    **options: Any,
) -> Run:
    """Train ``method`` on ``task``, evaluate it on both modalities, write the run to ``out`` and
    return it as a :class:`Run` (its ``metrics`` are those of ``out/result.json``).

    ``task``: a task folder, or the name of a task prepared under ``data_root`` / ``$KMAT_DATA``.
    ``backbone``: a spec (``biomedclip``, ``demo``, ``hf-hub:ORG/NAME``, ``local-dir:PATH``) or an
    already loaded :class:`~kmat.backbone.Backbone` (reused as is, e.g. across several runs).
    ``options``: run settings (the fields of :class:`~kmat.run.config.RunConfig`: ``shots``,
    ``seed``, ``device``, ``precision``, ``show_progress``, ...) and method options (the fields of
    the method's config: ``epochs``, ``lr``, ``lambda_fgw``, ...), e.g.
    ``kmat.train("toy", "coop", out="runs/coop", shots=4, seed=2, epochs=5)``.

    A folder holding a run of another configuration is not replaced unless ``overwrite``. A wrong
    method or option name is a :class:`~kmat.errors.ConfigError` raised before anything is loaded.
    """
    settings = {k: v for k, v in options.items() if k in _RUN_FIELDS}
    method_options = {
        **(settings.pop("options", None) or {}),
        **{k: v for k, v in options.items() if k not in _RUN_FIELDS},
    }
    loaded = backbone if isinstance(backbone, Backbone) else None
    cfg = RunConfig(
        task=str(task),
        out=str(out),
        method=method,
        backbone=loaded.name if loaded is not None else str(backbone),
        **settings,
        options=method_options,
    )
    resolve_config(get_method(cfg.method).Config, cfg.options)  # bad method or option: before loading
    cfg.validate()
    if loaded is None:
        loaded = load_backbone(cfg.backbone, device=resolve_device(cfg.device))
    _run_one(cfg, backbone=loaded, overwrite=overwrite)
    return Run(cfg.out, device=cfg.device, backbone=loaded)
