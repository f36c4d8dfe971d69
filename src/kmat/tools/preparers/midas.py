"""MRA-MIDAS: task skin1, dermoscopy (``midas_distance == "dscope"``) and clinical photographs
taken at 15 cm (``"6in"``), labels from ``midas_path`` (docs/datasets.md).

Controls and rows without ``midas_path`` are dropped; pathologies outside the class set are dropped
and counted; a ``midas_path`` outside the known vocabulary is an error (``drop_unknown_labels``
turns it into a drop). Files are found by name anywhere under the raw folder, accepting
``.jpg``/``.jpeg`` and ``_cropped`` variants, never guessing between several candidates.
``group_id`` = ``midas_record_id`` (patient); ``pair_id`` = ``record|location|LxW`` (lesion).
The split is generated once for both modalities, by patient.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from kmat.data.definitions import load_definition
from kmat.tools.preparers.base import Collected, Preparer, generated_split
from kmat.tools.preparers.common import (
    PrepareError,
    Row,
    block_lookup,
    cell_str,
    find_file,
    given_file,
    norm_column,
    norm_label,
    unique_shallowest,
)
from kmat.tools.preparers.pathindex import FileIndex
from kmat.tools.preparers.tables import read_rows

DISTANCES = {"dscope": "high_end", "6in": "low_end"}
SCCIS = "malignant- sccis"
KNOWN_PATHOLOGIES = frozenset(
    norm_label(s)
    for s in (
        "benign-melanocytic nevus",
        "benign-seborrheic keratosis",
        "benign-dermatofibroma",
        "benign-hemangioma",
        "benign-fibrous papule",
        "benign-other",
        "malignant- bcc",
        "malignant- scc",
        "malignant- sccis",
        "malignant- ak",
        "malignant- melanoma",
        "malignant- other",
        "other- melanocytic lesion, possible re-excision (severe, spitz, aimp)",
        "other- non-neoplastic, inflammatory, infectious",
        "melanocytic tumor, possible re-excision (severe, spitz, aimp)",
    )
)
REQUIRED = ("midas_record_id", "midas_file_name", "midas_iscontrol", "midas_distance", "midas_path")
HINT = (
    "is this an MRA-MIDAS download folder? Pass metadata=PATH if you moved release_midas.xlsx "
    "out of the image folder"
)


def find_metadata(raw: Path, given: object) -> Path:
    """``release_midas.xlsx`` (or ``.csv``): the given path, else the shallowest one under ``raw``."""
    if given:
        return given_file(raw, given, "MIDAS metadata file")
    found = find_file(raw, ("release_midas.xlsx",), max_depth=2)
    found = found or find_file(raw, ("release_midas.csv",), max_depth=2)
    return unique_shallowest(found, raw, "release_midas.xlsx (or release_midas.csv)", HINT)


def header_map(rows: list[list[object]], path: Path) -> tuple[int, dict[str, int]]:
    """(row number of the header, normalised column name -> index)."""
    for i, r in enumerate(rows[:10]):
        cols = {norm_column(c): j for j, c in enumerate(r) if cell_str(c)}
        if "midas_file_name" in cols:
            lacking = [c for c in REQUIRED if c not in cols]
            if lacking:
                raise PrepareError(
                    f"{path}: column(s) {lacking} missing: is this MRA-MIDAS release_midas metadata?"
                )
            return i, cols
    raise PrepareError(
        f"{path}: no header row with 'midas_file_name': is this MRA-MIDAS release_midas metadata?"
    )


class MidasPreparer(Preparer):
    name = "midas"
    task = "skin1"
    roles = ("high_end", "low_end")
    description = "MRA-MIDAS -> skin1 (dermoscopy + clinical 15 cm, generated patient-level split)"
    options: dict[str, object] = {
        "metadata": None,  # path of release_midas.xlsx/.csv (default: found under raw)
        "fold_sccis_into_scc": False,
        "label_map": None,  # {midas_path: class key}: another class set
        "classes": None,  # class order for a custom label_map
        "drop_unknown_labels": False,
        "ratios": None,  # train,val,test (default: the paper's)
    }

    def definition(self, out: Path, opts: dict) -> dict:
        spec = load_definition(self.task)
        lmap = dict(opts["label_map"] or spec["high_end"]["label_map"])
        if opts["label_map"] or opts["classes"]:
            values = list(dict.fromkeys(lmap.values()))
            given = opts["classes"]
            if isinstance(given, str):  # "a,b,c" (e.g. from --set classes=...)
                given = [c.strip() for c in given.split(",") if c.strip()]
            classes = list(
                given
                or [c for c in spec["classes"] if c in values]
                + [v for v in values if v not in spec["classes"]]
            )
            missing = sorted(set(values) - set(classes))
            if missing:
                raise PrepareError(f"label_map maps to class(es) {missing} that are not in classes={classes}")
            spec["classes"] = classes
            spec["classnames"] = {c: spec["classnames"].get(c, c.replace("_", " ")) for c in classes}
        if opts["fold_sccis_into_scc"]:
            if "squamous_cell_carcinoma" not in spec["classes"]:
                raise PrepareError("fold_sccis_into_scc needs the class 'squamous_cell_carcinoma'")
            lmap[SCCIS] = "squamous_cell_carcinoma"
        for role in self.roles:
            spec[role]["label_map"] = dict(lmap)
        return spec

    def collect(self, raw: Path, spec: dict, opts: dict) -> Collected:
        meta = find_metadata(raw, opts["metadata"])
        table = read_rows(meta)
        head, cols = header_map(table, meta)
        index = FileIndex(raw)
        lookups = {role: block_lookup(spec, role) for role in self.roles}
        col = Collected(root=raw, rows={r: [] for r in self.roles})
        dropped: Counter = Counter()

        def cell(r: list[object], name: str) -> str:
            j = cols.get(name)
            return cell_str(r[j]) if j is not None and j < len(r) else ""

        for lineno, r in enumerate(table[head + 1 :], start=head + 2):
            if not any(cell_str(c) for c in r):
                continue
            role = DISTANCES.get(norm_label(cell(r, "midas_distance")))
            if role is None:
                dropped["other distance (1ft, virtual, ...)"] += 1
                continue
            if norm_label(cell(r, "midas_iscontrol")) in ("yes", "y", "true", "1"):
                dropped["control lesion"] += 1
                continue
            source = cell(r, "midas_path")
            key = norm_label(source)
            if not key:
                dropped["no midas_path"] += 1
                continue
            label = lookups[role].get(key)
            if label is None:
                if key not in KNOWN_PATHOLOGIES and not opts["drop_unknown_labels"]:
                    raise PrepareError(
                        f"{meta.name}:{lineno}: unknown midas_path {source!r} (not a known MIDAS pathology; "
                        f"pass drop_unknown_labels=True to drop such rows, or map it with label_map)"
                    )
                dropped[f"pathology not in the class set: {source}"] += 1
                continue
            record = cell(r, "midas_record_id")
            fname = cell(r, "midas_file_name")
            where = f"{meta.name}:{lineno}"
            if not fname:
                col.problems.add(role, "missing", f"record {record}", "empty midas_file_name", where)
                continue
            res = index.resolve_name(fname, suffixes=("_cropped",))
            if res.path is None:
                kind = "ambiguous" if res.ambiguous else "missing"
                col.problems.add(role, kind, fname, ", ".join(res.candidates), where)
                continue
            size = f"{cell(r, 'length_mm')}x{cell(r, 'width_mm')}"
            pair = f"{record}|{norm_label(cell(r, 'midas_location'))}|{size}"
            col.rows[role].append(
                Row(res.path, label, spec[role]["modality"], self.name, record, pair, source)
            )
        for reason, n in sorted(dropped.items()):
            col.notes.append(f"dropped {n} row(s): {reason}")
        return col

    def split(self, col: Collected, spec: dict, opts: dict) -> dict[str, str]:
        return generated_split(col, spec, self.roles, opts, "midas", "patient (midas_record_id)")
