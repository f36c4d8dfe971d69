"""A task's data fingerprint: what a run's numbers depend on in its task folder.

``data_fingerprint(task)`` hashes the classes and their display names, each modality's name and
display name, and every manifest row that a run can read (split, image key, label) together with
the sha256 of the image's *bytes* (not its path or time stamp: a copied or moved dataset keeps its
fingerprint; a replaced image, a re-split or relabelled manifest, or a removed row changes it).
Image hashes are memoised per path, size and modification time (:func:`kmat.utils.cache.file_sha256`),
so a grid hashes each image once, and the feature cache, keyed by the same hashes, hits the memo.

A finished run records the fingerprint; a grid redoes a run whose task data has changed since.

:func:`check_content_leaks` uses the same hashes to find a training image that is also a
validation or test image under another name (the same bytes): a leak that inflates the high-end
numbers, which a check of paths alone cannot see.
"""

from __future__ import annotations

import hashlib
import json

from kmat.data.task import Task
from kmat.errors import TaskError
from kmat.utils.cache import file_sha256

_USED_SPLITS = ("train", "val", "test")  # "excluded" rows are never read by a run


def data_fingerprint(task: Task) -> str:
    """sha256 (first 16 hex digits) of the task's classes, modalities and used images (see module doc)."""
    body: dict[str, object] = {"classes": task.classes, "classnames": task.classnames}
    for mod in (task.high, task.low):
        rows = sorted(
            (s.split, s.rel, s.label, s.crop_border, file_sha256(s.path))
            for s in mod.samples
            if s.split in _USED_SPLITS
        )
        body[mod.role] = {"name": mod.name, "display_name": mod.display_name, "rows": rows}
    blob = json.dumps(body, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def check_content_leaks(task: Task, roles: tuple[str, ...] = ("high",)) -> None:
    """:class:`TaskError` when an image of the high-end train split has the same bytes as one of
    its val or test images (the leak is named by both manifest paths). Only the high-end modality
    is trained on: the low-end train split is never read by a run, so a copy there is no leak
    (``roles`` may still ask for it)."""
    for mod in (task.modality(r) for r in roles):
        train = {file_sha256(s.path): s for s in mod.samples if s.split == "train"}
        leaks = [
            (train[h], s)
            for s in mod.samples
            if s.split in ("val", "test") and (h := file_sha256(s.path)) in train
        ]
        if leaks:
            shown = "; ".join(f"{a.rel!r} (train) = {b.rel!r} ({b.split})" for a, b in leaks[:3])
            more = f"; and {len(leaks) - 3} more" if len(leaks) > 3 else ""
            raise TaskError(
                f"{mod.manifest}: {len(leaks)} evaluation image(s) have the same content as a training "
                f"image ({mod.role}-end, {mod.name}): {shown}{more}. Keep one copy, or set the other's "
                "split to 'excluded'"
            )
