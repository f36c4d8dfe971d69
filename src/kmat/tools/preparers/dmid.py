"""DMID: the mammography (high-end) modality of task breast (docs/datasets.md).

``Metadata.xlsx`` has about 30 legend rows before a header-less table whose columns are
``patientID, view, density, class, classification, x, y, radius``; an image with several lesions
has several rows. The table is found by its ``IMG###`` ids; ``classification`` (N/B/M, stray
spaces stripped) is aggregated per image by maximum severity (M > B > N; conflicts are noted).
An image without any N/B/M falls back, when ``birads_fallback``, to the BIRADS of its report
``Reports/Img###.txt`` (0-1 normal, 2-3 benign, 5-6 malignant; 4 stays unresolved and is skipped).
Images: ``TIFF Images/IMG###.tif`` (or ``DICOM Images/IMG###.dcm``), nested copies and
space/underscore spellings accepted. ``group_id`` = image id (DMID has no patient id).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from kmat.tools.preparers.base import Collected, Preparer, generated_split
from kmat.tools.preparers.common import (
    PrepareError,
    Row,
    cell_str,
    find_file,
    given_file,
    unique_shallowest,
    walk_files,
)
from kmat.tools.preparers.pathindex import FileIndex
from kmat.tools.preparers.tables import read_rows

ID_RE = re.compile(r"^img\s*\d+$", re.IGNORECASE)
BIRADS_RE = re.compile(r"bi-?rads\W{0,3}(\d)", re.IGNORECASE)
SEVERITY = {"N": 0, "B": 1, "M": 2}
BIRADS_CLASS = {0: "N", 1: "N", 2: "B", 3: "B", 5: "M", 6: "M"}
IMAGE_DIRS = {"tiff": ("TIFF Images", ".tif"), "dicom": ("DICOM Images", ".dcm")}
CLASSIFICATION_OFFSET = 4  # patientID, view, density, class, classification, ...
HINT = "is this a DMID folder (TIFF Images/, Reports/, Metadata.xlsx)?"


def find_metadata(raw: Path, given: object) -> Path:
    if given:
        return given_file(raw, given, "DMID metadata file")
    return unique_shallowest(find_file(raw, ("Metadata.xlsx",), max_depth=2), raw, "Metadata.xlsx", HINT)


def read_table(meta: Path) -> tuple[dict[str, list[tuple[int, str]]], list[str]]:
    """Image id -> [(line, raw classification)], in order; plus ids in first-seen order."""
    rows = read_rows(meta)
    id_col: int | None = None
    cls_col: int | None = None
    per_image: dict[str, list[tuple[int, str]]] = defaultdict(list)
    order: list[str] = []
    for lineno, r in enumerate(rows, start=1):
        cells = [cell_str(c) for c in r]
        if id_col is None or cls_col is None:  # header not found yet (cls_col is set with id_col)
            named = [j for j, c in enumerate(cells) if c.lower() == "classification"]
            if named:
                cls_col = named[0]
            hits = [j for j, c in enumerate(cells) if ID_RE.match(c)]
            if not hits:
                continue
            id_col = hits[0]
            if cls_col is None:
                cls_col = id_col + CLASSIFICATION_OFFSET
        image = cells[id_col] if id_col < len(cells) else ""
        if not ID_RE.match(image):
            continue
        image = re.sub(r"\s+", "", image).upper()  # "Img012" and "IMG012 " are one image
        if image not in per_image:
            order.append(image)
        per_image[image].append((lineno, cells[cls_col] if cls_col < len(cells) else ""))
    if not order:
        raise PrepareError(f"{meta}: no IMG### rows found: {HINT}")
    return per_image, order


def birads_of(text: str) -> set[int]:
    return {int(m.group(1)) for m in BIRADS_RE.finditer(text)}


class DmidPreparer(Preparer):
    name = "dmid"
    task = "breast"
    roles = ("high_end",)
    description = "DMID -> breast, mammography (generated stratified split)"
    options: dict[str, object] = {
        "metadata": None,  # path of Metadata.xlsx (default: found under raw)
        "image_format": "tiff",  # tiff | dicom
        "birads_fallback": True,
        "ratios": None,
    }

    def collect(self, raw: Path, spec: dict, opts: dict) -> Collected:
        fmt = str(opts["image_format"]).lower()
        if fmt not in IMAGE_DIRS:
            raise PrepareError(f"image_format must be 'tiff' or 'dicom', got {opts['image_format']!r}")
        meta = find_metadata(raw, opts["metadata"])
        root = meta.parent if not opts["metadata"] else raw
        per_image, order = read_table(meta)
        files = walk_files(root)  # one walk of the tree for both indexes
        index = FileIndex(root, files=files)
        reports = FileIndex(root, exts=frozenset({".txt"}), files=files) if opts["birads_fallback"] else None
        role = "high_end"
        col = Collected(root=root, rows={role: []})
        lookup = {k.upper(): v for k, v in spec[role]["label_map"].items()}
        folder, ext = IMAGE_DIRS[fmt]
        for image in order:
            where = f"{meta.name}:{per_image[image][0][0]}"
            values = []
            for lineno, v in per_image[image]:
                v = v.strip().upper()
                if v and v not in SEVERITY:
                    raise PrepareError(
                        f"{meta}:{lineno}: unknown classification {v!r} for {image}; expected N, B or M"
                    )
                if v:
                    values.append(v)
            if len(set(values)) > 1:
                col.notes.append(f"{image}: rows disagree ({'/'.join(values)}); kept the most severe")
            if values:
                code = max(values, key=SEVERITY.__getitem__)
                source = code
            else:
                from_report, source = self._fallback(image, reports, col, role, where)
                if from_report is None:
                    continue
                code = from_report
            rel = f"{folder}/{image}{ext}"
            res = index.resolve(rel)
            if res.path is None:
                col.problems.add(
                    role, "ambiguous" if res.ambiguous else "missing", rel, ", ".join(res.candidates), where
                )
                continue
            col.rows[role].append(
                Row(res.path, lookup[code], spec[role]["modality"], self.name, image, "", source)
            )
        return col

    def _fallback(
        self, image: str, reports: FileIndex | None, col: Collected, role: str, where: str
    ) -> tuple[str | None, str]:
        if reports is None:
            col.problems.add(
                role, "skipped", image, "no N/B/M classification (birads_fallback is off)", where
            )
            return None, ""
        res = reports.resolve(f"Reports/{image}.txt")
        if res.path is None:
            col.problems.add(role, "skipped", image, "no N/B/M classification and no report", where)
            return None, ""
        text = (reports.root / res.path).read_text(encoding="utf-8", errors="replace")
        found = birads_of(text)
        if len(found) != 1 or next(iter(found)) not in BIRADS_CLASS:
            what = f"BIRADS {sorted(found)}" if found else "no BIRADS"
            col.problems.add(
                role, "skipped", image, f"no N/B/M classification; report has {what}: unresolved", res.path
            )
            return None, ""
        b = next(iter(found))
        col.notes.append(f"{image}: label from report BIRADS {b} (no N/B/M classification)")
        return BIRADS_CLASS[b], f"BIRADS {b} (report)"

    def split(self, col: Collected, spec: dict, opts: dict) -> dict[str, str]:
        return generated_split(col, spec, self.roles, opts, "dmid", "image (DMID has no patient id)")
