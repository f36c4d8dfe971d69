"""Tolerant, never-guessing resolution of the file names written in dataset metadata.

An index of the files under a dataset root is built once. A name from the metadata is looked up in
stages, stopping at the first stage with any match:

1. the exact relative path;
2. the same path compared case-insensitively, with folder names normalised (space, hyphen and
   underscore are equal: ``TIFF Images`` = ``TIFF_Images``) and a folder nested inside a folder of
   the same name collapsed (``TIFF Images/TIFF Images/`` = ``TIFF Images/``);
3. extension variants (``.jpg`` = ``.jpeg``, ``.tif`` = ``.tiff``), case-insensitively;
4. extra name suffixes the caller allows (MIDAS ``_cropped``), with the same extension variants.

A stage with exactly one match resolves the name; a stage with several is *ambiguous* and reported
with its candidates (never picked); no match at all is *missing*.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kmat.tools.preparers.common import IMAGE_EXTS, norm_name, walk_files

EXT_GROUPS = ({".jpg", ".jpeg"}, {".tif", ".tiff"})


def _ext_variants(ext: str) -> set[str]:
    ext = ext.lower()
    for group in EXT_GROUPS:
        if ext in group:
            return set(group)
    return {ext}


def _dir_key(parts: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for p in parts:
        n = norm_name(p)
        if not out or out[-1] != n:
            out.append(n)
    return tuple(out)


@dataclass(frozen=True)
class Resolution:
    """Outcome of a lookup: ``path`` when resolved, else ``candidates`` (several = ambiguous)."""

    path: str | None
    candidates: tuple[str, ...] = ()

    @property
    def ambiguous(self) -> bool:
        return self.path is None and len(self.candidates) > 1


class FileIndex:
    """Case-insensitive index of the (image) files under ``root``; paths are POSIX, relative."""

    def __init__(
        self, root: Path, exts: frozenset[str] | None = IMAGE_EXTS, files: list[str] | None = None
    ) -> None:
        self.root = root
        all_files = files if files is not None else walk_files(root)
        self.files = [f for f in all_files if exts is None or PurePosixPath(f).suffix.lower() in exts]
        self._exact = set(self.files)
        self._by_key: dict[tuple, list[str]] = defaultdict(list)
        self._by_stem: dict[tuple, list[str]] = defaultdict(list)
        self._by_name: dict[str, list[str]] = defaultdict(list)
        self._by_name_stem: dict[str, list[str]] = defaultdict(list)
        for f in self.files:
            pp = PurePosixPath(f)
            dkey = _dir_key(pp.parts[:-1])
            self._by_key[(dkey, pp.name.lower())].append(f)
            self._by_stem[(dkey, pp.stem.lower())].append(f)
            self._by_name[pp.name.lower()].append(f)
            self._by_name_stem[pp.stem.lower()].append(f)

    def __len__(self) -> int:
        return len(self.files)

    @staticmethod
    def _pick(matches: list[str]) -> Resolution | None:
        if not matches:
            return None
        uniq = tuple(sorted(set(matches)))
        return Resolution(uniq[0]) if len(uniq) == 1 else Resolution(None, uniq)

    def _variants(self, keys: list[tuple], ext: str) -> list[str]:
        exts = _ext_variants(ext)
        out: list[str] = []
        for key in keys:
            for f in self._by_stem.get(key, ()):
                if PurePosixPath(f).suffix.lower() in exts:
                    out.append(f)
        return out

    def resolve(self, rel: str, suffixes: tuple[str, ...] = ()) -> Resolution:
        """Look up a path relative to the root (see the module docstring for the stages)."""
        rel = rel.replace("\\", "/").strip().lstrip("/")
        if rel in self._exact:
            return Resolution(rel)
        pp = PurePosixPath(rel)
        dkey = _dir_key(pp.parts[:-1])
        stages = [
            lambda: self._by_key.get((dkey, pp.name.lower()), []),
            lambda: self._variants([(dkey, pp.stem.lower())], pp.suffix),
            lambda: self._variants([(dkey, (pp.stem + s).lower()) for s in suffixes], pp.suffix),
        ]
        for stage in stages:
            res = self._pick(stage())
            if res is not None:
                return res
        return Resolution(None)

    def resolve_name(self, name: str, suffixes: tuple[str, ...] = ()) -> Resolution:
        """Look up a bare file name anywhere under the root (same stages, folders ignored)."""
        pp = PurePosixPath(name.replace("\\", "/").strip())
        stages = [
            lambda: self._by_name.get(pp.name.lower(), []),
            lambda: [
                f
                for f in self._by_name_stem.get(pp.stem.lower(), [])
                if PurePosixPath(f).suffix.lower() in _ext_variants(pp.suffix)
            ],
            lambda: [
                f
                for s in suffixes
                for f in self._by_name_stem.get((pp.stem + s).lower(), [])
                if PurePosixPath(f).suffix.lower() in _ext_variants(pp.suffix)
            ],
        ]
        for stage in stages:
            res = self._pick(stage())
            if res is not None:
                return res
        return Resolution(None)
