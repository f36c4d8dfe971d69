"""Kaggle "Chest X-ray (Covid-19 & Pneumonia)" (prashant268): the X-ray (low-end) modality of task
chest (docs/datasets.md).

``Data/{train,test}/{COVID19,NORMAL,PNEUMONIA}/*`` (extensions mixed, any case). By default the
Kaggle train and test folders are pooled and re-split, stratified, with the paper's per-split
totals 4595/923/914 when all 6,432 images are there (``split="kaggle"`` keeps Kaggle's train/test,
with no val). ``group_id`` = the image path without extension (stems repeat across folders).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from kmat.tools.preparers.base import Collected, Preparer, generated_split
from kmat.tools.preparers.common import PrepareError, Row, norm_name
from kmat.tools.preparers.folders import SPLIT_DIRS, find_base, folder_lookup, scan_tree, subdirs

HINT = "is this the Kaggle prashant268 chest X-ray folder (Data/train/, Data/test/ with COVID19/, NORMAL/, PNEUMONIA/)?"


class ChestXrayPreparer(Preparer):
    name = "chestxray"
    task = "chest"
    roles = ("low_end",)
    description = "Kaggle prashant268 chest X-ray -> chest, xray (pooled and re-split)"
    options: dict[str, object] = {"split": "generated", "ratios": None}  # split: generated | kaggle

    def collect(self, raw: Path, spec: dict, opts: dict) -> Collected:
        if opts["split"] not in ("generated", "kaggle"):
            raise PrepareError(f"split must be 'generated' or 'kaggle', got {opts['split']!r}")
        role = self.roles[0]
        block = spec[role]
        lookup = folder_lookup(block.get("label_map", {}), spec["classes"], None)

        def is_data(p: Path) -> bool:
            splits = [p / d for d in subdirs(p) if SPLIT_DIRS.get(norm_name(d)) in ("train", "test")]
            return bool(splits) and all(any(norm_name(c) in lookup for c in subdirs(s)) for s in splits)

        base = find_base(raw, is_data, "train/ and test/ folders of X-ray classes", HINT)
        images, _, _ = scan_tree(base, lookup, [], "yes", what="the chest X-ray set")
        col = Collected(root=base, rows={role: []})
        for im in images:
            group = str(PurePosixPath(im.rel).with_suffix(""))
            row = Row(
                im.rel, im.label, block["modality"], block.get("dataset", self.name), group, "", im.folder
            )
            row.split = im.split
            col.rows[role].append(row)
        return col

    def split(self, col: Collected, spec: dict, opts: dict) -> dict[str, str]:
        if opts["split"] == "kaggle":
            return {self.roles[0]: "Kaggle's own train/test folders (no val split)"}
        return generated_split(
            col, spec, self.roles, opts, "cxr_prashant268", "image; Kaggle train+test pooled"
        )
