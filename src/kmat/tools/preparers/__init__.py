"""Dataset preparers: a raw download -> a manifest CSV per modality and the task's ``task.json``.

Entry points (library only; the command line wraps them)::

    prepare_dataset(dataset, raw, out, **options) -> PrepareReport
    list_tasks(data_root) -> list[TaskStatus]

``out`` is the data root: a preparer writes ``out/<task>/<dataset>__<modality>.csv`` and
(re)writes ``out/<task>/task.json`` from the shipped task definition
(``kmat/data/tasks/<task>.json``), recording each prepared modality's raw ``root`` and the
manifests' sha256. Once both modalities of a task are prepared, ``kmat.data.task.load_task``
loads ``out/<task>``. Datasets (see :data:`PREPARERS`): derm7pt and midas prepare both modalities
of their task; dmid + busi (breast) and cc_ccii + chestxray (chest) one each; imagefolder writes
one modality of any task. Options common to all: ``skip_missing`` (default False: any missing or
ambiguous file is an error), ``seed`` (generated splits, default 0) and ``overwrite`` (replace a
manifest whose content changed; default False).
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from kmat.data.definitions import load_definition, task_names
from kmat.tools.preparers.base import COMMON_OPTIONS, Preparer, run
from kmat.tools.preparers.common import PrepareError, Problem
from kmat.tools.preparers.listing import ModalityStatus, TaskStatus, format_task_list, list_tasks
from kmat.tools.preparers.report import ModalityReport, PrepareReport

_ORDER = ("derm7pt", "midas", "dmid", "busi", "cc_ccii", "chestxray", "imagefolder")  # listing order


def _discover() -> dict[str, Preparer]:
    """Every :class:`Preparer` subclass with a ``name`` in this package's modules: a dataset is one
    module here, with no list to edit."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    found: dict[str, Preparer] = {}
    stack = list(Preparer.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.name:
            found[cls.name] = cls()
    ordered = [n for n in _ORDER if n in found] + sorted(n for n in found if n not in _ORDER)
    return {n: found[n] for n in ordered}


PREPARERS: dict[str, Preparer] = _discover()

ALIASES = {
    "cxr_prashant268": "chestxray",
    "cxr": "chestxray",
    "prashant268": "chestxray",
    "cc-ccii": "cc_ccii",
    "ccccii": "cc_ccii",
    "mra_midas": "midas",
    "mra-midas": "midas",
    "derm7": "derm7pt",
    "image_folder": "imagefolder",
}

__all__ = [
    "PREPARERS",
    "PrepareError",
    "PrepareReport",
    "ModalityReport",
    "Problem",
    "TaskStatus",
    "ModalityStatus",
    "prepare_dataset",
    "list_tasks",
    "format_task_list",
    "dataset_names",
    "preparer_options",
    "load_definition",
    "task_names",
]


def dataset_names() -> list[str]:
    """Names accepted by :func:`prepare_dataset` (aliases excluded)."""
    return list(PREPARERS)


def get_preparer(dataset: str) -> Preparer:
    """The preparer of ``dataset`` (case-insensitive; aliases such as ``cxr_prashant268`` accepted)."""
    key = str(dataset).strip().lower()
    key = ALIASES.get(key, key)
    if key not in PREPARERS:
        raise PrepareError(f"unknown dataset {dataset!r}; known: {dataset_names()}")
    return PREPARERS[key]


def preparer_options(dataset: str) -> dict[str, object]:
    """Every option of a dataset's preparer with its default (``None``: found or derived)."""
    return {**COMMON_OPTIONS, **get_preparer(dataset).options}


def prepare_dataset(dataset: str, raw: str | Path, out: str | Path, **options: object) -> PrepareReport:
    """Prepare the raw download ``raw`` of ``dataset`` into the data root ``out``.

    Writes ``out/<task>/<manifest>.csv`` (columns path,label,split,modality,dataset,group_id,
    pair_id,source_label; paths relative to the raw dataset root), a ``<manifest>.skipped.csv``
    when files were skipped, and ``out/<task>/task.json``. Re-running with the same inputs rewrites
    identical bytes; a manifest whose content would change is only replaced with ``overwrite=True``.

    Raises :class:`PrepareError` (a ``ValueError``) with a message naming the file and the problem:
    wrong raw folder, unknown label, empty class, or missing/ambiguous images (unless
    ``skip_missing=True``). Options per dataset: :func:`preparer_options`.
    """
    return run(get_preparer(dataset), raw, out, options)
