"""The paper's task definitions, shipped as JSON data in ``kmat/data/tasks/<task>.json``.

A definition is a task.json (the format :func:`kmat.data.task.load_task` reads) without the
per-installation fields: class order and display names, per modality (``high_end`` / ``low_end``)
its dataset, preparer, modality key, display name, manifest name and raw-label map, plus the
paper's expected split counts, split provenance, sources and licence notes. Preparing a dataset
copies the definition into ``<data root>/<task>/task.json`` and adds each prepared modality's
``root`` and the manifests' sha256 checksums.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path

from kmat.errors import PrepareError

ROLES = ("high_end", "low_end")


def _tasks_dir() -> Path:
    return Path(str(resources.files("kmat.data") / "tasks"))


PAPER_ORDER = ("skin1", "skin2", "breast", "chest")


def task_names() -> list[str]:
    """Names of the shipped task definitions (the paper's order, then any others sorted)."""
    names = {p.stem for p in _tasks_dir().glob("*.json")}
    return [n for n in PAPER_ORDER if n in names] + sorted(names - set(PAPER_ORDER))


def load_definition(task: str) -> dict:
    """A fresh copy of a shipped task definition; :class:`PrepareError` for an unknown name."""
    path = _tasks_dir() / f"{task}.json"
    if not path.is_file():
        raise PrepareError(f"unknown task {task!r}; shipped tasks: {task_names()}")
    spec = json.loads(path.read_text(encoding="utf-8"))
    validate_definition(spec, str(path))
    return copy.deepcopy(spec)


def validate_definition(spec: dict, source: str) -> None:
    """Check a definition: classes, both modality blocks, label maps onto known classes.

    A raw label equal to a class key must map to itself, because ``load_task`` applies the label map
    to the (already canonical) labels of the manifest.
    """
    classes = spec.get("classes")
    if not isinstance(classes, list) or not classes or len(set(classes)) != len(classes):
        raise PrepareError(f"{source}: 'classes' must be a non-empty list of unique class keys")
    for role in ROLES:
        block = spec.get(role)
        if not isinstance(block, dict):
            continue
        for key in ("modality", "manifest"):
            if not block.get(key):
                raise PrepareError(f"{source}: {role}.{key} is required")
        lmap = block.get("label_map", {})
        bad = sorted({v for v in lmap.values() if v not in classes})
        if bad:
            raise PrepareError(
                f"{source}: {role}.label_map maps to unknown class(es) {bad}; classes are {classes}"
            )
        clash = sorted(k for k, v in lmap.items() if k in classes and k != v)
        if clash:
            raise PrepareError(f"{source}: {role}.label_map renames class key(s) {clash} to other classes")
    if not any(isinstance(spec.get(r), dict) for r in ROLES):
        raise PrepareError(f"{source}: needs a 'high_end' or 'low_end' block")
