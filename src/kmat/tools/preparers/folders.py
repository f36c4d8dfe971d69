"""Scanning ``[<split>/]<class>/**/<image>`` folder trees (BUSI, the prashant268 X-rays, any
ImageFolder-style download): class-folder aliases, optional split folders, exclusion globs."""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

from kmat.tools.preparers.common import (
    IMAGE_EXTS,
    PrepareError,
    is_hidden,
    natural_key,
    norm_name,
    walk_files,
)

SPLIT_DIRS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


@dataclass(frozen=True)
class FolderImage:
    rel: str  # POSIX path relative to the scanned root
    label: str  # class key
    folder: str  # the class folder's name as on disk (the source label)
    split: str  # "train"/"val"/"test" from a split folder, else ""


def folder_lookup(
    label_map: dict[str, str], classes: list[str], aliases: dict[str, str] | None
) -> dict[str, str]:
    """Normalised folder name -> class key (class keys, the label map, then user aliases)."""
    out = {norm_name(c): c for c in classes}
    out.update({norm_name(k): v for k, v in label_map.items()})
    for k, v in (aliases or {}).items():
        if v not in classes:
            raise PrepareError(f"class alias {k!r} -> {v!r}: {v!r} is not a class of the task ({classes})")
        out[norm_name(k)] = v
    return out


def subdirs(path: Path) -> list[str]:
    return sorted(d.name for d in path.iterdir() if d.is_dir() and not is_hidden(d.name))


def find_base(raw: Path, accept, what: str, hint: str, max_depth: int = 2) -> Path:
    """The shallowest folder (``raw`` or below) for which ``accept(folder)`` is true; unique or error."""
    level = [raw]
    for _ in range(max_depth + 1):
        hits = [p for p in level if accept(p)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            listed = ", ".join(str(p.relative_to(raw)) for p in hits)
            raise PrepareError(f"several {what} folders under {raw} ({listed}): pass the one to use as raw")
        level = [p / d for p in level for d in subdirs(p)]
    raise PrepareError(f"no {what} found under {raw}: {hint}")


def _excluded(rel: str, patterns: list[str]) -> bool:
    name = rel.rsplit("/", 1)[-1].lower()
    return any(
        fnmatch.fnmatchcase(name, p.lower()) or fnmatch.fnmatchcase(rel.lower(), p.lower()) for p in patterns
    )


def scan_classes(
    base: Path, lookup: dict[str, str], exclude: list[str], split: str = "", prefix: str = "", what: str = ""
) -> tuple[list[FolderImage], int]:
    """Images under ``base/<class folder>/**``; returns them and the number of excluded files.

    Every sub-folder of ``base`` must name a class (via ``lookup``); an unknown one is an error.
    """
    images: list[FolderImage] = []
    n_excluded = 0
    for name in subdirs(base):
        label = lookup.get(norm_name(name))
        if label is None:
            known = sorted({k for k in lookup})
            raise PrepareError(
                f"{base / name}: folder {name!r} is not a class of {what or 'the task'} (known folder names, "
                f"normalised: {known}); map it with class_aliases={{{name!r}: '<class key>'}}",
                options={"class_aliases": f"{name}=CLASS"},
            )
        for f in walk_files(base / name):
            rel = f"{prefix}{name}/{f}"
            if os.path.splitext(f)[1].lower() not in IMAGE_EXTS:
                continue
            if _excluded(rel, exclude):
                n_excluded += 1
                continue
            images.append(FolderImage(rel, label, name, split))
    images.sort(key=lambda i: natural_key(i.rel))
    return images, n_excluded


def scan_tree(
    root: Path, lookup: dict[str, str], exclude: list[str], split_folders: str = "auto", what: str = ""
) -> tuple[list[FolderImage], int, bool]:
    """``root/<class>/**`` or ``root/<split>/<class>/**`` (``split_folders``: auto, yes, no).

    Returns the images, the number excluded, and whether split folders were used.
    """
    if split_folders not in ("auto", "yes", "no"):
        raise PrepareError(f"split_folders must be 'auto', 'yes' or 'no', got {split_folders!r}")
    dirs = subdirs(root)
    as_split = [d for d in dirs if norm_name(d) in SPLIT_DIRS]
    use = split_folders == "yes" or (split_folders == "auto" and bool(as_split))
    if not use:
        images, n_ex = scan_classes(root, lookup, exclude, what=what)
        return images, n_ex, False
    if not as_split:
        raise PrepareError(f"{root}: no train/val/test folders (split_folders='yes')")
    others = [d for d in dirs if d not in as_split]
    if others:
        raise PrepareError(
            f"{root}: folder(s) {others} next to split folders {as_split}; "
            "move them, or pass split_folders='no'"
        )
    images, n_ex = [], 0
    for d in as_split:
        got, n = scan_classes(root / d, lookup, exclude, SPLIT_DIRS[norm_name(d)], prefix=f"{d}/", what=what)
        images += got
        n_ex += n
    images.sort(key=lambda i: natural_key(i.rel))
    return images, n_ex, True
