"""Cross-modal tasks in the manifest format of docs/datasets.md.

A task folder holds::

    task.json            classes (order), classnames, high_end / low_end: dataset, modality,
                         display_name, manifest (CSV, relative to the folder), optional root, optional
                         crop_border (pixels cut from every image border before the transforms)
    <manifest>.csv       one per modality: path,label,split[,modality,dataset,group_id,pair_id,source_label]
    descriptions.json    {modality: {class: [sentence, ...]}} (needed by the anchor term)

Image paths in a manifest are relative to the modality's ``root`` (default: the task folder).
Loading validates everything up front and fails with a message that names the file, the line and
the problem (unknown class, missing image, empty split).
"""

from __future__ import annotations

import codecs
import csv
import difflib
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from kmat.data.definitions import load_definition, task_names
from kmat.data.spec import ModalitySpec, TaskSpec, check_task_spec
from kmat.errors import ConfigError, TaskError
from kmat.utils.io import read_json_file

SPLITS = ("train", "val", "test", "excluded")
MODALITY_ROLES = ("high", "low")
_ROLE_KEYS = {"high": "high_end", "low": "low_end"}


@dataclass(frozen=True)
class Sample:
    """One image of a manifest."""

    path: Path  # absolute
    rel: str  # as written in the manifest (the image's key in caches and few-shot files)
    label: int
    split: str
    group_id: str
    crop_border: int = 0  # pixels cut from every border before the transforms (Derm7pt's black frame)


@dataclass
class Modality:
    role: str  # "high" or "low"
    name: str  # controlled vocabulary, e.g. "dermoscopy", "xray"; keys descriptions.json
    display_name: str  # used in prompts, e.g. "clinical photograph"
    dataset: str
    manifest: Path
    root: Path
    samples: list[Sample]

    def split(self, split: str) -> list[Sample]:
        return [s for s in self.samples if s.split == split]


@dataclass
class Task:
    name: str
    folder: Path
    classes: list[str]
    classnames: list[str]
    high: Modality
    low: Modality
    descriptions_path: Path | None
    spec: dict

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def modality(self, role: str) -> Modality:
        if role not in MODALITY_ROLES:
            raise ConfigError(f"modality role must be 'high' or 'low', got {role!r}")
        return self.high if role == "high" else self.low


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def fs_text(text: str) -> str:
    """A path read from a UTF-8 text file (manifest, task.json) as the file system API wants it:
    the same string where the file system encoding is UTF-8; under an ASCII locale
    (``LC_ALL=C PYTHONUTF8=0``) the string whose encoded bytes are the UTF-8 bytes on disk
    (``os.fsdecode`` of them), so that non-ASCII file names are still found."""
    if codecs.lookup(sys.getfilesystemencoding()).name == "utf-8":
        return text
    return os.fsdecode(text.encode("utf-8", "surrogateescape"))


def _read_manifest(
    path: Path, root: Path, classes: list[str], label_map: dict, check_files: bool, crop_border: int = 0
) -> list[Sample]:
    if not path.is_file():
        raise TaskError(f"{path}: manifest file not found")
    index = {c: i for i, c in enumerate(classes)}
    samples: list[Sample] = []
    missing: list[str] = []
    seen: dict[str, int] = {}  # image path -> first line
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: Excel's "CSV UTF-8" has a BOM
            reader = csv.DictReader(fh)
            cols = set(reader.fieldnames or [])
            rows = list(reader)
    except UnicodeDecodeError as err:
        raise TaskError(
            f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8"
        ) from None
    except csv.Error as err:
        raise TaskError(f"{path}: unreadable CSV ({err})") from None
    need = {"path", "label", "split"} - cols
    if need:
        raise TaskError(f"{path}: missing column(s) {sorted(need)}; a manifest needs path,label,split")
    for lineno, row in enumerate(rows, start=2):
        label = (row.get("label") or "").strip()
        label = label_map.get(label, label)
        if label not in index:
            raise TaskError(
                f"{path}:{lineno}: unknown class {label!r}{_suggest(label, classes)}; "
                f"the task's classes are {classes}"
            )
        split = (row.get("split") or "").strip()
        if split not in SPLITS:
            raise TaskError(f"{path}:{lineno}: unknown split {split!r}; expected one of {list(SPLITS)}")
        if split == "excluded":
            continue
        rel = (row.get("path") or "").strip()
        if not rel:
            raise TaskError(f"{path}:{lineno}: empty image path")
        rel_fs = fs_text(rel)
        img = (root / rel_fs) if not os.path.isabs(rel_fs) else Path(rel_fs)
        key = os.path.normpath(str(img))
        if key in seen:
            raise TaskError(
                f"{path}:{lineno}: image {rel!r} is listed again (first at line {seen[key]}); "
                "an image may appear once per manifest (a repeat across splits would leak test images)"
            )
        seen[key] = lineno
        if check_files and not img.is_file():
            missing.append(f"{path}:{lineno}: image not found: {img}")
        group = (row.get("group_id") or "").strip() or rel
        samples.append(Sample(img, rel, index[label], split, group, crop_border))
    if missing:
        more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise TaskError(f"{len(missing)} image(s) missing:\n  " + "\n  ".join(missing[:10]) + more)
    return samples


def _modality(
    folder: Path, spec: TaskSpec, role: str, classes: list[str], check_files: bool, read_samples: bool = True
) -> Modality:
    m: ModalitySpec = spec.high_end if role == "high" else spec.low_end
    root = Path(fs_text(m.root or "."))
    root = root if root.is_absolute() else (folder / root)
    manifest = folder / fs_text(m.manifest)
    samples = (
        _read_manifest(manifest, root.resolve(), classes, m.label_map, check_files, m.crop_border)
        if read_samples
        else []
    )
    return Modality(
        role=role,
        name=m.modality,
        display_name=m.display_name or m.modality.replace("_", " "),
        dataset=m.dataset,
        manifest=manifest,
        root=root.resolve(),
        samples=samples,
    )


def _require_split(mod: Modality, split: str, classes: list[str]) -> None:
    rows = mod.split(split)
    if not rows:
        raise TaskError(
            f"{mod.manifest}: empty split: no rows with split={split!r} ({mod.role}-end, {mod.name})"
        )
    present = {s.label for s in rows}
    absent = [c for i, c in enumerate(classes) if i not in present]
    if split == "train" and absent:
        raise TaskError(
            f"{mod.manifest}: class(es) {absent} have no {split!r} image ({mod.role}-end, {mod.name})"
        )
    if absent:  # a test split without a class: its accuracy is undefined, its F1 counts as 0
        warnings.warn(
            f"{mod.manifest}: the {split} split has no image of class(es) {absent} ({mod.role}-end, "
            f"{mod.name}); their per-class accuracy is missing and macro-F1 averages in 0 for them",
            stacklevel=3,
        )


def task_name(folder: Path, spec: dict) -> str:
    """A task's name: task.json's ``task``, else its (resolved) folder's name."""
    return spec.get("task") or Path(folder).expanduser().resolve().name


def load_task(folder: str | Path, check_files: bool = True, read_low: bool = True) -> Task:
    """Load and validate a task folder (task.json + manifests; descriptions are read lazily).

    ``read_low=False`` leaves the low-end manifest unread (its modality has no samples; its name and
    display name come from task.json): hyper-parameter search on the high-end data, where no
    low-end image path or label may be seen before the final evaluation."""
    folder = Path(folder).expanduser().resolve()
    tj = folder / "task.json"
    if not tj.is_file():
        raise TaskError(f"{folder}: not a task folder (task.json missing)")
    data = read_json_file(tj, TaskError, "task file")
    checked = check_task_spec(data, tj)
    spec: dict = data  # type: ignore[assignment]  # an object, as check_task_spec has made sure
    classes = checked.classes
    names = checked.classnames
    classnames = [names.get(c, c.replace("_", " ")) for c in classes]
    high = _modality(folder, checked, "high", classes, check_files)
    low = _modality(folder, checked, "low", classes, check_files, read_samples=read_low)
    if high.name == low.name:
        raise TaskError(f"{tj}: high_end and low_end must have different modality names (both {high.name!r})")
    _require_split(high, "train", classes)
    _require_split(high, "test", classes)
    if read_low:
        _require_split(low, "test", classes)
    desc = folder / fs_text(checked.descriptions)
    return Task(
        name=task_name(folder, spec),
        folder=folder,
        classes=classes,
        classnames=classnames,
        high=high,
        low=low,
        descriptions_path=desc if desc.is_file() else None,
        spec=spec,
    )


def _prepare_hint(task: str) -> str:
    """How to prepare a paper task, from its shipped definition ('' for other names)."""
    if task not in task_names():
        return ""
    spec = load_definition(task)
    preparers = dict.fromkeys(
        spec[r].get("preparer", spec[r].get("dataset", "?")) for r in ("high_end", "low_end")
    )
    return "; prepare it with " + " and ".join(
        f"'kmat prepare {p} --raw DIR --out DATA_ROOT'" for p in preparers
    )


def resolve_task(task: str, data_root: str | Path | None = None) -> Path:
    """A task argument is a task folder, or a task name prepared under ``data_root`` / ``$KMAT_DATA``."""
    p = Path(task).expanduser()
    if p.is_dir():
        return p
    root = data_root or os.environ.get("KMAT_DATA")
    if root:
        cand = Path(root).expanduser() / task
        if (cand / "task.json").is_file():
            return cand
        raise TaskError(
            f"task {task!r} not found: {cand} has no task.json (prepare it first, or pass a task "
            f"folder){_prepare_hint(task)}"
        )
    raise TaskError(
        f"task {task!r} is not a folder, and no data root is set (KMAT_DATA) to look it up in"
        f"{_prepare_hint(task)}",
        field="data_root",
    )
