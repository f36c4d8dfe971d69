"""kmat: cross-modal prompt learning on frozen medical vision-language models (K-MaT and baselines).

The public Python API (``import kmat`` is light: each name is imported on first use)::

    import kmat

    run = kmat.train("path/to/task", method="kmat", out="runs/kmat-s1", epochs=50)
    run = kmat.load_run("runs/kmat-s1")
    preds = run.predict(["image.png"], modality="low")

- :func:`train` -- train and evaluate one run, write its folder, return it as a :class:`Run`;
- :func:`load_run` -- a finished run folder as a :class:`Run` (``.predict``, ``.metrics``,
  ``.config``, ``.classes``, ``.class_embeddings``);
- :class:`RunConfig` -- a run's settings (``kmat.run.runner.run(config)`` runs it: the layer below
  :func:`train`);
- :func:`load_task`, :func:`load_backbone`, :func:`available_methods`, :func:`register`
  (add a method), :class:`KmatError` (every error kmat reports about its input).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

PRECISIONS = ("fp32", "bf16")  # fp32: the default, for fidelity; bf16: autocast of the frozen towers

# public name -> the module that defines it (imported on first access: torch only when needed)
_LAZY = {
    "train": "kmat.api",
    "load_run": "kmat.api",
    "Run": "kmat.api",
    "Predictions": "kmat.api",
    "RunConfig": "kmat.run.config",
    "load_task": "kmat.data.task",
    "load_backbone": "kmat.backbone",
    "available_methods": "kmat.methods",
    "register": "kmat.methods",
    "KmatError": "kmat.errors",
}

__all__ = ["PRECISIONS", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kmat' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
