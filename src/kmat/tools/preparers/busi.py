"""BUSI: the ultrasound (low-end) modality of task breast (docs/datasets.md).

``Dataset_BUSI_with_GT/{benign,malignant,normal}/*.png`` (BiomedCoOp's renamed folders
``benign_tumor`` etc. are accepted too); masks (``*_mask*``) are skipped. The split is either
imported from BiomedCoOp's ``split_BUSI.json`` (``split_file``: entries ``[relpath, label_int,
classname]``, matched by file name and remapped through the class *name*, never the index), or
generated, stratified, with the paper's per-split totals 389/155/236 when all 780 images are there.
``group_id`` = image stem.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from kmat.tools.preparers.base import Collected, Preparer, generated_split
from kmat.tools.preparers.common import SPLITS, PrepareError, Row, norm_name
from kmat.tools.preparers.folders import find_base, folder_lookup, scan_classes, subdirs

HINT = "is this BUSI's Dataset_BUSI_with_GT folder (benign/, malignant/, normal/)?"
DEFAULT_EXCLUDE = ["*_mask*"]


def import_biomedcoop_split(
    path: Path, rows: list[Row], lookup: dict[str, str], col: Collected, role: str
) -> dict[str, str]:
    """Image path -> split from a BiomedCoOp ``split_BUSI.json``; problems go to ``col``."""
    try:
        data = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise PrepareError(f"split file {path}: cannot read it ({err})") from err
    if not isinstance(data, dict) or not any(k in data for k in SPLITS):
        raise PrepareError(
            f"split file {path}: expected {{'train': [[relpath, label, classname], ...], 'val': ..., 'test': ...}}"
        )
    by_name: dict[str, list[Row]] = {}
    for r in rows:
        by_name.setdefault(PurePosixPath(r.path).name.lower(), []).append(r)
    out: dict[str, str] = {}
    for split in SPLITS:
        for n, entry in enumerate(data.get(split, [])):
            where = f"{Path(path).name}:{split}[{n}]"
            if not isinstance(entry, list | tuple) or len(entry) < 3:
                raise PrepareError(f"{where}: expected [relpath, label, classname], got {entry!r}")
            rel, cname = str(entry[0]), str(entry[2])
            label = lookup.get(norm_name(cname))
            if label is None:
                raise PrepareError(f"{where}: unknown class name {cname!r} (known: {sorted(lookup)})")
            cands = by_name.get(PurePosixPath(rel).name.lower(), [])
            if len(cands) > 1:
                cands = [r for r in cands if r.label == label]
            if not cands:
                col.problems.add(role, "missing", rel, "listed in the split file, not found on disk", where)
                continue
            if len(cands) > 1:
                col.problems.add(role, "ambiguous", rel, ", ".join(r.path for r in cands), where)
                continue
            row = cands[0]
            if row.label != label:
                raise PrepareError(
                    f"{where}: {rel!r} is {cname!r} in the split file but lies in folder "
                    f"{row.source_label!r} ({row.label}) on disk"
                )
            if row.path in out and out[row.path] != split:
                raise PrepareError(f"{where}: {rel!r} is in both {out[row.path]!r} and {split!r}")
            out[row.path] = split
    return out


class BusiPreparer(Preparer):
    name = "busi"
    task = "breast"
    roles = ("low_end",)
    description = "BUSI -> breast, ultrasound (BiomedCoOp split_BUSI.json, or generated 389/155/236)"
    options: dict[str, object] = {
        "split_file": None,  # BiomedCoOp data/BUSI/split_BUSI.json
        "exclude": None,  # globs (default: *_mask*)
        "ratios": None,
    }

    def collect(self, raw: Path, spec: dict, opts: dict) -> Collected:
        role = self.roles[0]
        block = spec[role]
        lookup = folder_lookup(block.get("label_map", {}), spec["classes"], None)

        def is_busi(p: Path) -> bool:
            return sum(norm_name(d) in lookup for d in subdirs(p)) >= 2

        base = find_base(raw, is_busi, "BUSI class folders (benign/, malignant/, normal/)", HINT)
        exclude = list(opts["exclude"] or DEFAULT_EXCLUDE)
        images, n_ex = scan_classes(base, lookup, exclude, what="BUSI")
        col = Collected(root=base, rows={role: []})
        for im in images:
            stem = PurePosixPath(im.rel).stem
            col.rows[role].append(Row(im.rel, im.label, block["modality"], self.name, stem, "", im.folder))
        col.notes.append(f"excluded {n_ex} file(s) matching {exclude}")
        if opts["split_file"]:
            col.extra["imported"] = import_biomedcoop_split(
                opts["split_file"], col.rows[role], lookup, col, role
            )
        return col

    def split(self, col: Collected, spec: dict, opts: dict) -> dict[str, str]:
        role = self.roles[0]
        if "imported" not in col.extra:
            return generated_split(col, spec, self.roles, opts, "busi", "image")
        imported = col.extra["imported"]
        n_out = 0
        for r in col.rows[role]:
            r.split = imported.get(r.path, "excluded")
            n_out += r.split == "excluded"
        if n_out:
            col.notes.append(f"{n_out} image(s) on disk are not in the split file: kept as split 'excluded'")
        return {
            role: f"imported: BiomedCoOp split file {Path(opts['split_file']).name} "
            "(entries matched by file name, labels remapped by class name)"
        }
