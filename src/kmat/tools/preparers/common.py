"""Shared pieces of the dataset preparers: the error type, manifest rows, label normalisation,
problem records (missing / ambiguous / skipped files) and small file-system helpers."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from kmat.data.definitions import ROLES
from kmat.data.images import IMAGE_SUFFIXES
from kmat.errors import PrepareError

__all__ = ["ROLES", "PrepareError"]

MANIFEST_COLUMNS = ("path", "label", "split", "modality", "dataset", "group_id", "pair_id", "source_label")
SPLITS = ("train", "val", "test")
IMAGE_EXTS = frozenset(IMAGE_SUFFIXES)


@dataclass
class Row:
    """One manifest row (docs/datasets.md); ``split`` is filled in by the splitter."""

    path: str
    label: str
    modality: str
    dataset: str
    group_id: str
    pair_id: str = ""
    source_label: str = ""
    split: str = ""

    def as_list(self) -> list[str]:
        return [
            self.path,
            self.label,
            self.split,
            self.modality,
            self.dataset,
            self.group_id,
            self.pair_id,
            self.source_label,
        ]


@dataclass
class Problem:
    """A file that could not be used: ``kind`` is missing, ambiguous or skipped."""

    role: str
    kind: str
    item: str  # what was looked for (a path or a metadata entry)
    detail: str = ""  # why, or the candidates of an ambiguous match
    source: str = ""  # where the entry came from (file:line)

    def format(self) -> str:
        src = f" [{self.source}]" if self.source else ""
        det = f": {self.detail}" if self.detail else ""
        return f"{self.kind}: {self.item}{det}{src}"


@dataclass
class Problems:
    """Problems found while collecting rows, in discovery order."""

    items: list[Problem] = field(default_factory=list)

    def add(self, role: str, kind: str, item: str, detail: str = "", source: str = "") -> None:
        self.items.append(Problem(role, kind, item, detail, source))

    def of_kind(self, *kinds: str) -> list[Problem]:
        return [p for p in self.items if p.kind in kinds]


def norm_label(text: object) -> str:
    """Normalise a raw label: strip, lower-case, collapse white space, no spaces around hyphens.

    ``"malignant- bcc"``, ``"Malignant -BCC "`` and ``"malignant-bcc"`` all become ``"malignant-bcc"``.
    """
    s = re.sub(r"\s+", " ", str(text if text is not None else "").strip().lower())
    return re.sub(r"\s*-\s*", "-", s)


def norm_name(text: str) -> str:
    """Normalise a folder name for tolerant matching: lower case; spaces, hyphens, underscores -> ``_``."""
    return re.sub(r"[\s_\-]+", "_", text.strip().lower())


def label_lookup(label_map: dict[str, str]) -> dict[str, str]:
    """``label_map`` keyed by :func:`norm_label` of its keys."""
    return {norm_label(k): v for k, v in label_map.items()}


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded numbers numerically (``img2`` before ``img10``), deterministic."""
    parts = re.split(r"(\d+)", text)
    return tuple((0, int(p), p) if p.isdigit() else (1, 0, p) for p in parts)


def cell_str(value: object) -> str:
    """A spreadsheet/CSV cell as a stripped string; integral floats lose their ``.0``."""
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        if value.is_integer():
            return str(int(value))
    return str(value).strip()


def norm_column(name: object) -> str:
    """Normalise a column header: ``length_(mm)`` and ``length__mm_`` both become ``length_mm``."""
    return re.sub(r"[^0-9a-z]+", "_", cell_str(name).lower()).strip("_")


def is_hidden(name: str) -> bool:
    """Dot files, macOS resource forks (``._x``) and ``__MACOSX`` folders are never data."""
    return name.startswith(".") or name == "__MACOSX" or name == "Thumbs.db"


def walk_files(root: Path) -> list[str]:
    """All non-hidden files under ``root`` as sorted POSIX paths relative to it."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        rel_dir = os.path.relpath(dirpath, root)
        prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        out.extend(prefix + f for f in filenames if not is_hidden(f))
    return sorted(out)


def find_file(raw: Path, names: tuple[str, ...], max_depth: int = 2) -> list[Path]:
    """Files under ``raw`` (at most ``max_depth`` folders deep) whose name matches one of ``names``
    case-insensitively, shallowest first."""
    wanted = {n.lower() for n in names}
    found: list[tuple[int, str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(raw):
        depth = len(Path(dirpath).relative_to(raw).parts)
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d)) if depth < max_depth else []
        for f in filenames:
            if f.lower() in wanted and not is_hidden(f):
                found.append((depth, str(Path(dirpath, f)), Path(dirpath, f)))
    found.sort()
    return [p for _, _, p in found]


def given_file(raw: Path, given: object, what: str) -> Path:
    """A file the user named: absolute, relative to the working folder, or relative to ``raw``."""
    p = Path(str(given)).expanduser()
    p = p if p.is_absolute() or p.exists() else raw / p
    if not p.is_file():
        raise PrepareError(f"{what} {p} not found")
    return p


def unique_shallowest(found: list[Path], raw: Path, what: str, hint: str) -> Path:
    """The single shallowest match, or a :class:`PrepareError` (none found, or several at one depth)."""
    if not found:
        raise PrepareError(f"{what} not found under {raw}: {hint}")
    depth = len(found[0].relative_to(raw).parts)
    top = [p for p in found if len(p.relative_to(raw).parts) == depth]
    if len(top) > 1:
        listed = ", ".join(str(p.relative_to(raw)) for p in top)
        raise PrepareError(
            f"{what}: several candidates under {raw} ({listed}); pass the one to use explicitly"
        )
    return found[0]


def check_raw_folder(raw: str | Path) -> Path:
    """The raw download folder as an absolute path; a clear error if it is not a folder."""
    p = Path(raw).expanduser()
    if not p.exists():
        raise PrepareError(f"raw folder {p} does not exist")
    if not p.is_dir():
        raise PrepareError(f"raw folder {p} is not a folder")
    return p.resolve()


def role_of(spec: dict, modality: str) -> str:
    """The role (``high_end`` / ``low_end``) whose modality key is ``modality``."""
    for role in ROLES:
        if isinstance(spec.get(role), dict) and spec[role].get("modality") == modality:
            return role
    have = [spec[r].get("modality") for r in ROLES if isinstance(spec.get(r), dict)]
    raise PrepareError(f"task {spec.get('task')!r} has no modality {modality!r} (its modalities: {have})")


def block_lookup(spec: dict, role: str) -> dict[str, str]:
    """The role's raw-label map (normalised keys), plus every class key mapping to itself."""
    lookup = {k: k for k in spec["classes"]}
    lookup.update(label_lookup({k.replace("_", " "): k for k in spec["classes"]}))
    lookup.update(label_lookup(spec.get(role, {}).get("label_map", {})))
    return lookup
