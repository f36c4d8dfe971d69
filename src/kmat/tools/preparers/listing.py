"""Which tasks exist and which of their modalities are prepared under a data root (``kmat tasks``)."""

from __future__ import annotations

import csv
import json
import os
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from kmat.data.definitions import load_definition, task_names
from kmat.errors import KmatError
from kmat.tools.preparers.common import ROLES, SPLITS
from kmat.tools.preparers.writer import sha256_file


@dataclass
class ModalityStatus:
    """One modality of a task under a data root."""

    role: str  # high_end / low_end
    modality: str
    dataset: str
    preparer: str  # the prepare_dataset name that writes it
    manifest: Path | None
    state: str  # prepared | not prepared | manifest missing | modified (checksum differs) | unreadable
    counts: dict[str, int]  # split -> images (empty unless the manifest is readable)
    expected: dict[str, int] | None  # the paper's
    root: str | None  # raw folder recorded at preparation

    @property
    def prepared(self) -> bool:
        return self.state == "prepared"


@dataclass
class TaskStatus:
    """A task: where its data is expected and the state of both modalities."""

    task: str
    folder: Path | None
    shipped: bool
    high: ModalityStatus
    low: ModalityStatus
    train_gap: str = ""  # prepared, but what the default method (kmat) still needs ('' if nothing)
    template: bool = False  # its descriptions are a template (``kmat describe --stub``)

    @property
    def prepared(self) -> bool:
        return self.high.prepared and self.low.prepared

    @property
    def ready(self) -> bool:
        """Prepared, and the default method (kmat) can train on it: it has descriptions."""
        return self.prepared and not self.train_gap


def training_gap(folder: Path) -> tuple[str, bool]:
    """What the default method (kmat) lacks to train on a prepared task folder ('' if nothing: it
    loads and has descriptions of both modalities), and whether those descriptions are a template."""
    from kmat.data.task import load_task
    from kmat.errors import DescriptionsMissingError
    from kmat.knowledge.descriptions import load_descriptions, template_descriptions

    try:
        task = load_task(folder, check_files=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load_descriptions(task)
    except DescriptionsMissingError:
        return "no descriptions.json in the task folder", False
    except KmatError as err:
        return str(err), False
    return "", template_descriptions(task)


def describe_hint(folder: Path | str) -> str:
    """The commands that write a task folder's descriptions (offline template, or an LLM's)."""
    return (
        f"write a template offline with: kmat describe --stub --task {folder}  (or real ones with: "
        f"kmat describe --task {folder} --model MODEL --out {Path(folder) / 'descriptions.json'})"
    )


def readiness(prepared: bool, missing: str, template: bool, folder: Path | str) -> str:
    """One line: ready to train with the default method, or what is missing and how to add it."""
    if not prepared:
        return "not prepared"
    if missing:
        return (
            f"prepared, NOT ready to train with the default method (kmat): {missing}; {describe_hint(folder)}"
        )
    if template:
        return "ready (descriptions are a TEMPLATE: results are marked template-only; replace them with real ones)"
    return "ready"


def _count(manifest: Path) -> dict[str, int] | None:
    try:
        with open(manifest, newline="", encoding="utf-8") as fh:
            c = Counter((r.get("split") or "").strip() for r in csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return {s: c.get(s, 0) for s in (*SPLITS, "excluded") if s in SPLITS or c.get(s)}


def _modality(spec: dict, role: str, folder: Path | None) -> ModalityStatus:
    given = spec.get(role)
    block: dict = given if isinstance(given, dict) else {}
    expected = (spec.get("expected_counts") or {}).get(role)
    manifest = folder / block["manifest"] if folder and block.get("manifest") else None
    state, counts = "not prepared", {}
    if manifest is not None and "root" in block:
        recorded = (spec.get("manifest_sha256") or {}).get(block["manifest"])
        got = _count(manifest) if manifest.is_file() else None
        if not manifest.is_file():
            state = "manifest missing"
        elif got is None:
            state = "unreadable"
        else:
            counts = got
            state = "prepared" if recorded in (None, sha256_file(manifest)) else "modified (checksum differs)"
    return ModalityStatus(
        role,
        block.get("modality", "?"),
        block.get("dataset", "?"),
        block.get("preparer", block.get("dataset", "?")),
        manifest,
        state,
        counts,
        expected,
        block.get("root"),
    )


def _spec(folder: Path | None, name: str) -> dict:
    if folder is not None and (folder / "task.json").is_file():
        try:
            doc = json.loads((folder / "task.json").read_text(encoding="utf-8"))
            if isinstance(doc, dict):
                return doc
        except json.JSONDecodeError:
            pass
    return load_definition(name) if name in task_names() else {"task": name}


def list_tasks(data_root: str | Path | None = None) -> list[TaskStatus]:
    """The shipped tasks, then any other task folder under ``data_root`` (default ``$KMAT_DATA``),
    each with the folder its data is expected in and the state and counts of both modalities."""
    root = data_root if data_root is not None else os.environ.get("KMAT_DATA")
    base = Path(root).expanduser().resolve() if root else None
    names = task_names()
    if base is not None and base.is_dir():
        extra = sorted(p.name for p in base.iterdir() if (p / "task.json").is_file() and p.name not in names)
        names = names + extra
    out = []
    for name in names:
        folder = base / name if base is not None else None
        spec = _spec(folder, name)
        status = TaskStatus(
            name,
            folder,
            name in task_names(),
            _modality(spec, ROLES[0], folder),
            _modality(spec, ROLES[1], folder),
        )
        if status.prepared and folder is not None:
            status.train_gap, status.template = training_gap(folder)
        out.append(status)
    return out


def format_task_list(rows: list[TaskStatus]) -> str:
    """A plain-text table of :func:`list_tasks` rows (counts as train/val/test, paper in brackets)."""
    head = f"{'task':<8} {'role':<5} {'modality':<14} {'prepare with':<13} {'state':<16} {'train/val/test':<20} paper"
    lines = [head]
    for t in rows:
        for m in (t.high, t.low):
            got = "/".join(str(m.counts.get(s, 0)) for s in SPLITS) if m.counts else "-"
            paper = "/".join(str(m.expected.get(s, 0)) for s in SPLITS) if m.expected else "-"
            role = m.role.split("_")[0]
            lines.append(
                f"{t.task:<8} {role:<5} {m.modality:<14} {m.preparer:<13} {m.state:<16} {got:<20} {paper}"
            )
        where = str(t.folder) if t.folder else "(no data root: set KMAT_DATA or pass one)"
        lines.append(f"{'':<8} folder: {where}")
        if t.prepared and t.folder is not None:
            state = readiness(True, t.train_gap, t.template, t.folder)
            lines.append(f"{'':<8} [{state}]" if t.ready else f"{'':<8} {state}")
    return "\n".join(lines)
