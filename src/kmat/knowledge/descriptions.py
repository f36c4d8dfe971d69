"""Clinical descriptions per (modality, class): loading and validation.

Format: ``{modality: {class: [sentence, ...]}}``, keyed by the modality names and class keys of a
task's ``task.json``. Shipped files live in ``kmat/knowledge/data/<task>.json``.

A file with a top-level :data:`TEMPLATE_KEY` (``"_template"``, a string saying so) holds template
sentences written from the class and modality names only (``kmat describe --stub``): loading it
works, with a warning, and every run of the task records ``config.descriptions_template: true``.
Other top-level keys than the task's modality names are ignored.
"""

from __future__ import annotations

import warnings
from importlib import resources
from pathlib import Path

from kmat.data.task import Task
from kmat.errors import DescriptionsMissingError, TaskError
from kmat.utils.io import read_json_file

MIN_DESCRIPTIONS = 50
TEMPLATE_KEY = "_template"


def is_template(data: object) -> bool:
    """Whether a parsed descriptions file is a template (has the top-level :data:`TEMPLATE_KEY`)."""
    return isinstance(data, dict) and TEMPLATE_KEY in data


def template_descriptions(task: Task) -> bool:
    """Whether the descriptions a run of ``task`` reads are a template (False: real, or none)."""
    source = descriptions_source(task)
    if source is None or not Path(source).is_file():
        return False
    try:
        return is_template(read_json_file(source, TaskError, "descriptions file"))
    except TaskError:
        return False


def shipped_path(task_name: str) -> Path | None:
    """The package's own description file for a task name, if there is one."""
    p = resources.files("kmat.knowledge") / "data" / f"{task_name}.json"
    return Path(str(p)) if p.is_file() else None


def validate_descriptions(
    data: object, classes: list[str], modalities: list[str], source: str, min_count: int = 1
) -> dict[str, dict[str, list[str]]]:
    """Check that every class has >= ``min_count`` unique sentences for every modality."""
    if not isinstance(data, dict):
        raise TaskError(f"{source}: expected an object {{modality: {{class: [sentences]}}}}")
    problems = []
    for m in modalities:
        block = data.get(m)
        if not isinstance(block, dict):
            problems.append(f"modality {m!r} missing (found: {sorted(data)})")
            continue
        for c in classes:
            items = block.get(c)
            if not isinstance(items, list) or not items:
                problems.append(f"{m}/{c}: no descriptions")
                continue
            if not all(isinstance(s, str) and s.strip() for s in items):
                problems.append(f"{m}/{c}: every description must be a non-empty string")
                continue
            dupes = len(items) - len({s.strip() for s in items})
            if dupes:
                problems.append(f"{m}/{c}: {dupes} exact duplicate(s)")
            if len(items) < min_count:
                problems.append(f"{m}/{c}: {len(items)} descriptions, at least {min_count} needed")
    if problems:
        raise TaskError(f"{source}: invalid descriptions:\n  " + "\n  ".join(problems))
    return {m: {c: [s.strip() for s in data[m][c]] for c in classes} for m in modalities}


def descriptions_source(task: Task) -> Path | None:
    """The descriptions file a run of ``task`` reads: its folder's, else the shipped one, else None."""
    return task.descriptions_path if task.descriptions_path is not None else shipped_path(task.name)


def load_descriptions(task: Task, min_count: int = 1) -> dict[str, dict[str, list[str]]]:
    """Descriptions of a task: its folder's ``descriptions.json``, else the shipped file of its name.

    Neither is a :class:`DescriptionsMissingError`; its message says to add the file and names no
    method's option (a method that can do without them adds how: K-MaT's anchor)."""
    path = task.descriptions_path
    if path is None:
        path = shipped_path(task.name)
        min_count = max(min_count, MIN_DESCRIPTIONS) if path is not None else min_count
    if path is None:
        raise DescriptionsMissingError(
            f"{task.folder}: no descriptions.json (and none shipped for task {task.name!r}); add one "
            "to the task folder: {modality: {class: [sentences]}} for both modalities"
        )
    data = read_json_file(path, TaskError, "descriptions file")
    if is_template(data):
        warnings.warn(
            f"{path}: template-only descriptions (written from the class and modality names, they "
            "describe no image); results are marked descriptions_template (not comparable to runs "
            "with real descriptions): replace the file with real descriptions",
            stacklevel=2,
        )
    return validate_descriptions(data, task.classes, [task.high.name, task.low.name], str(path), min_count)
