"""Writing a task folder: manifests (byte-stable CSV), skipped-file reports and task.json."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from kmat.tools.preparers.common import (
    MANIFEST_COLUMNS,
    ROLES,
    PrepareError,
    Problem,
    Row,
    natural_key,
)
from kmat.utils.io import atomic_write_bytes, csv_bytes


def manifest_bytes(rows: list[Row]) -> bytes:
    """The manifest CSV of ``rows`` (sorted naturally by path; ``\\n`` line ends, UTF-8)."""
    ordered = sorted(rows, key=lambda r: (natural_key(r.path), r.path))
    return csv_bytes(MANIFEST_COLUMNS, (r.as_list() for r in ordered), lineterminator="\n")


def problems_bytes(problems: list[Problem]) -> bytes:
    """The skipped-file report: one CSV row per missing, ambiguous or skipped entry."""
    return csv_bytes(
        ["kind", "item", "detail", "source"],
        ([p.kind, p.item, p.detail, p.source] for p in problems),
        lineterminator="\n",
    )


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    return sha256_bytes(path.read_bytes())


def check_overwrite(path: Path, data: bytes, overwrite: bool) -> None:
    """Refuse to silently replace a manifest whose content differs (splits are written once)."""
    if overwrite or not path.is_file():
        return
    old = path.read_bytes()
    if old == data:
        return
    old_lines, new_lines = (
        set(old.decode("utf-8", "replace").splitlines()),
        set(data.decode("utf-8").splitlines()),
    )
    changed = len(old_lines ^ new_lines)
    raise PrepareError(
        f"{path} already exists with different content ({changed} line(s) differ); a split is written "
        "once so that every run uses the same one. Pass overwrite=True to replace it (runs made with "
        "the old manifest will not be comparable), or prepare into another data root.",
        options={"overwrite": None},
    )


def write_bytes_if_changed(path: Path, data: bytes) -> None:
    """Write atomically, leaving an identical file untouched (its mtime too)."""
    if path.is_file() and path.read_bytes() == data:
        return
    atomic_write_bytes(path, data)


def jsonable(value: object) -> object:
    """Option values as JSON (paths as strings, tuples as lists)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def merge_task_json(spec: dict, existing: dict | None, prepared: dict[str, dict]) -> tuple[dict, list[str]]:
    """The task.json to write: ``spec`` (the definition with options applied) with, per role,

    - a role prepared now: its ``root``, manifest checksum, provenance and preparation record;
    - any other role: copied from the existing task.json when it was prepared for the same classes.

    ``prepared[role]`` holds ``root``, ``sha256``, ``provenance`` and ``record``. Returns the
    document and notes (e.g. an earlier modality dropped because the class set changed).
    """
    notes: list[str] = []
    doc = json.loads(json.dumps(spec))
    doc.pop("manifest_sha256", None)
    doc.pop("prepared", None)
    provenance = dict(doc.get("split_provenance", {}))
    records: dict[str, dict] = {}
    sums: dict[str, str] = {}
    prev = existing or {}
    for role in ROLES:
        if role in prepared:
            p = prepared[role]
            doc[role]["root"] = p["root"]
            provenance[role] = p["provenance"]
            records[role] = p["record"]
            sums[doc[role]["manifest"]] = p["sha256"]
            continue
        old = prev.get(role)
        if not isinstance(old, dict) or "root" not in old:
            if isinstance(doc.get(role), dict):
                doc[role].pop("root", None)
            continue
        if prev.get("classes") != doc.get("classes"):
            notes.append(
                f"the {role.replace('_', '-')} modality was prepared earlier for classes "
                f"{prev.get('classes')}; prepare it again for {doc.get('classes')}"
            )
            if isinstance(doc.get(role), dict):
                doc[role].pop("root", None)
            continue
        doc[role] = old
        if old.get("manifest") in (prev.get("manifest_sha256") or {}):
            sums[old["manifest"]] = prev["manifest_sha256"][old["manifest"]]
        if role in (prev.get("split_provenance") or {}):
            provenance[role] = prev["split_provenance"][role]
        if role in (prev.get("prepared") or {}):
            records[role] = prev["prepared"][role]
    doc["split_provenance"] = provenance
    doc["manifest_sha256"] = sums
    doc["prepared"] = records
    return doc, notes


def task_json_bytes(doc: dict) -> bytes:
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def read_json(path: Path) -> dict | None:
    """A JSON object from ``path``; ``None`` when absent; a clear error when invalid."""
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PrepareError(f"{path}: invalid JSON ({err}); fix or delete it") from err
    if not isinstance(doc, dict):
        raise PrepareError(f"{path}: expected a JSON object")
    return doc
