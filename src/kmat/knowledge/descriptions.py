"""Clinical descriptions per (modality, class): loading and validation.

Format: ``{modality: {class: [sentence, ...]}}``, keyed by the modality names and class keys of a
task's ``task.json``. Shipped files live in ``kmat/knowledge/data/<task>.json``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from kmat.data.task import Task
from kmat.errors import DescriptionsMissingError, TaskError
from kmat.utils.io import read_json_file

MIN_DESCRIPTIONS = 50


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
    return validate_descriptions(data, task.classes, [task.high.name, task.low.name], str(path), min_count)
