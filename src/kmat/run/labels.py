"""True labels of images given to ``kmat predict``, and the scores of its predictions against them.

Two sources: a labelled class-folder (``FOLDER/<class>/.../image.png``, the layout ``kmat prepare
imagefolder`` reads: an image's class is the name of the first folder under the given one), or a
CSV of ``path,label`` rows (a path relative to the CSV's folder, or absolute). A label is a class
of the run (its name, or its prompt name: ``basal_cell`` or ``basal cell``), in any case, with
spaces, underscores or hyphens between its words (``Basal Cell``, ``basal-cell``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from kmat.errors import ConfigError
from kmat.metrics import classification_metrics
from kmat.utils.io import read_text_file


def _key(name: str) -> str:
    """A class name as it is looked up: lower case, words split at spaces, underscores and hyphens."""
    return " ".join(name.replace("_", " ").replace("-", " ").lower().split())


def _class_index(classes: Sequence[str], classnames: Sequence[str]) -> dict[str, int]:
    """The class of each spelling of a class name or prompt name (:func:`_key`)."""
    index: dict[str, int] = {}
    for i, (c, n) in enumerate(zip(classes, classnames, strict=True)):
        for key in (c, n):
            index.setdefault(_key(key), i)
    return index


def folder_labels(
    inputs: Sequence[str | Path], images: Sequence[Path], classes: Sequence[str], classnames: Sequence[str]
) -> dict[Path, int] | None:
    """The class of each image that lies in a class-named folder directly under a given folder;
    ``None`` when no given folder has a class-named subfolder (unlabelled images)."""
    index = _class_index(classes, classnames)
    roots = [Path(i).expanduser() for i in inputs if Path(i).expanduser().is_dir()]
    labelled_roots = [r for r in roots if any(d.is_dir() and _key(d.name) in index for d in r.iterdir())]
    if not labelled_roots:
        return None
    out: dict[Path, int] = {}
    for img in images:
        for root in labelled_roots:
            try:
                rel = img.relative_to(root)
            except ValueError:
                continue
            if len(rel.parts) > 1 and _key(rel.parts[0]) in index:
                out[img] = index[_key(rel.parts[0])]
                break
    return out


def csv_labels(path: str | Path, classes: Sequence[str], classnames: Sequence[str]) -> dict[Path, int]:
    """``path,label`` rows of a CSV (a header row with those names; UTF-8, with or without a
    byte-order mark); an unknown class, or an image given two different labels, is an error naming
    the row."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"--labels {path}: no such file")
    index = _class_index(classes, classnames)
    text = read_text_file(path, ConfigError, "labels file", name=f"--labels {path}")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if not {"path", "label"} <= set(header):
        raise ConfigError(
            f"--labels {path}: needs a header row with the columns 'path' and 'label' "
            f"(found {rows[0] if rows else None})"
        )
    at_path, at_label = header.index("path"), header.index("label")
    out: dict[Path, int] = {}
    line_of: dict[Path, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        cell = row[at_path].strip() if at_path < len(row) else ""
        label = row[at_label].strip() if at_label < len(row) else ""
        if _key(label) not in index:
            raise ConfigError(
                f"--labels {path}, line {line}: {label!r} is not a class of the run "
                f"(classes: {', '.join(classes)})"
            )
        if not cell:
            raise ConfigError(f"--labels {path}, line {line}: no path")
        p = Path(cell).expanduser()
        p = (p if p.is_absolute() else path.parent / p).resolve()
        y = index[_key(label)]
        if p in out and out[p] != y:
            raise ConfigError(
                f"--labels {path}, line {line}: {cell} is labelled {classes[y]!r} here but "
                f"{classes[out[p]]!r} on line {line_of[p]}"
            )
        out[p], line_of[p] = y, line
    return out


def labels_of(
    names: Sequence[str], labels: dict[Path, int], by_resolved_path: bool = False
) -> tuple[list[int], list[int]]:
    """``(positions, labels)`` of the predicted images (named by path) that have a true label."""
    pos: list[int] = []
    out: list[int] = []
    for i, name in enumerate(names):
        p = Path(name).resolve() if by_resolved_path else Path(name)
        if p in labels:
            pos.append(i)
            out.append(labels[p])
    return pos, out


def score(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> dict:
    """Accuracy and macro-F1 (%), per-class accuracy and the confusion matrix (rows: true class,
    columns: predicted class, both in ``classes`` order) of predictions against true labels."""
    m = classification_metrics(list(y_true), list(y_pred), len(classes))
    return {
        "n": len(y_true),
        "acc": round(m["acc"], 4),
        "macro_f1": round(m["macro_f1"], 4),
        "per_class_acc": dict(zip(classes, m["per_class_acc"], strict=True)),
        "classes": list(classes),
        "confusion": m["confusion"],
    }


def confusion_text(scores: dict) -> str:
    """The confusion matrix as an aligned text table (rows: true class; columns: predicted)."""
    classes = scores["classes"]
    w = max(8, *(len(c) for c in classes)) + 1
    lines = [" " * w + "".join(f"{c[: w - 1]:>{w}}" for c in classes) + "   (rows: true, columns: predicted)"]
    for c, row in zip(classes, scores["confusion"], strict=True):
        lines.append(f"{c:<{w}}" + "".join(f"{v:>{w}}" for v in row))
    return "\n".join(lines)
