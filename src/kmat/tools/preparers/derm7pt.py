"""Derm7pt (``release_v0``): task skin2, dermoscopy (``derm``) and clinical (``clinic``) images of
the same 1,011 cases, the official 5-class grouping and the official split index files
(docs/datasets.md). ``group_id = pair_id = case_num``; paths are ``images/<meta.csv value>``
resolved case-insensitively (the release mixes ``.JPG`` and ``.jpg``)."""

from __future__ import annotations

import csv
from pathlib import Path

from kmat.tools.preparers.base import Collected, Preparer
from kmat.tools.preparers.common import (
    PrepareError,
    Row,
    block_lookup,
    find_file,
    norm_label,
    unique_shallowest,
)
from kmat.tools.preparers.pathindex import FileIndex

COLUMNS = {"high_end": "derm", "low_end": "clinic"}
REQUIRED = ("case_num", "diagnosis", "clinic", "derm")
INDEX_FILES = {"train": "train_indexes.csv", "val": "valid_indexes.csv", "test": "test_indexes.csv"}
HINT = "is this a Derm7pt release_v0 folder (images/, meta/meta.csv)?"


def find_root(raw: Path) -> Path:
    """The ``release_v0`` folder: the one holding ``meta/meta.csv`` (``raw`` itself or below it)."""
    if (raw / "meta" / "meta.csv").is_file():
        return raw
    found = [p for p in find_file(raw, ("meta.csv",), max_depth=3) if p.parent.name.lower() == "meta"]
    return unique_shallowest(found, raw, "meta/meta.csv", HINT).parent.parent


def read_index_file(path: Path, n_rows: int) -> list[int]:
    """0-based meta.csv row numbers from an official ``*_indexes.csv`` (column ``indexes``)."""
    if not path.is_file():
        raise PrepareError(
            f"{path} not found: the official Derm7pt split needs meta/train_indexes.csv, "
            "meta/valid_indexes.csv and meta/test_indexes.csv"
        )
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    if not rows:
        raise PrepareError(f"{path}: empty index file")
    header = [c.strip().lower() for c in rows[0]]
    if "indexes" in header:
        col, body, first = header.index("indexes"), rows[1:], 2
    elif header[0].lstrip("-").isdigit():
        col, body, first = 0, rows, 1
    else:
        col, body, first = len(header) - 1, rows[1:], 2
    out: list[int] = []
    for lineno, r in enumerate(body, start=first):
        try:
            i = int(float(r[col]))
        except (ValueError, IndexError) as err:
            raise PrepareError(f"{path}:{lineno}: not a row number: {r!r}") from err
        if not 0 <= i < n_rows:
            raise PrepareError(f"{path}:{lineno}: row number {i} outside meta.csv (0..{n_rows - 1})")
        out.append(i)
    return out


class Derm7ptPreparer(Preparer):
    name = "derm7pt"
    task = "skin2"
    roles = ("high_end", "low_end")
    description = "Derm7pt release_v0 -> skin2 (dermoscopy + clinical, official split)"
    options: dict[str, object] = {}

    def collect(self, raw: Path, spec: dict, opts: dict) -> Collected:
        root = find_root(raw)
        meta = root / "meta" / "meta.csv"
        with open(meta, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = {(f or "").strip(): f for f in reader.fieldnames or []}
            lacking = [c for c in REQUIRED if c not in fields]
            if lacking:
                raise PrepareError(f"{meta}: column(s) {lacking} missing (found {sorted(fields)}): {HINT}")
            records = list(reader)
        index = FileIndex(root)
        col = Collected(root=root, rows={r: [] for r in self.roles})
        row_of: dict[tuple[str, str], int] = {}
        lookups = {role: block_lookup(spec, role) for role in self.roles}
        for i, rec in enumerate(records):
            lineno = i + 2
            diagnosis = (rec[fields["diagnosis"]] or "").strip()
            for role in self.roles:
                label = lookups[role].get(norm_label(diagnosis))
                if label is None:
                    known = sorted(spec[role].get("label_map", {}))
                    raise PrepareError(
                        f"{meta}:{lineno}: unknown diagnosis {diagnosis!r}; known values: {known}"
                    )
                case = (rec[fields["case_num"]] or "").strip() or str(i + 1)
                value = (rec[fields[COLUMNS[role]]] or "").strip()
                if not value:
                    col.problems.add(
                        role,
                        "missing",
                        f"case {case}",
                        f"empty {COLUMNS[role]!r} column",
                        f"meta.csv:{lineno}",
                    )
                    continue
                rel = "images/" + value.replace("\\", "/").lstrip("/")
                res = index.resolve(rel)
                if res.path is None:
                    kind = "ambiguous" if res.ambiguous else "missing"
                    col.problems.add(role, kind, rel, ", ".join(res.candidates), f"meta.csv:{lineno}")
                    continue
                row = Row(res.path, label, spec[role]["modality"], self.name, case, case, diagnosis)
                col.rows[role].append(row)
                row_of[(role, res.path)] = i
        splits: dict[int, str] = {}
        for split, fname in INDEX_FILES.items():
            for i in read_index_file(root / "meta" / fname, len(records)):
                if i in splits and splits[i] != split:
                    raise PrepareError(
                        f"{root / 'meta'}: meta.csv row {i} is in both {splits[i]!r} and {split!r}"
                    )
                splits[i] = split
        col.extra = {"row_of": row_of, "splits": splits}
        n_out = len(records) - len(splits)
        if n_out:
            col.notes.append(
                f"{n_out} case(s) of meta.csv are in no official index file: kept as split 'excluded'"
            )
        return col

    def split(self, col: Collected, spec: dict, opts: dict) -> dict[str, str]:
        row_of, splits = col.extra["row_of"], col.extra["splits"]
        for role in self.roles:
            for r in col.rows[role]:
                r.split = splits.get(row_of[(role, r.path)], "excluded")
        return {role: spec["split_provenance"][role] for role in self.roles}
