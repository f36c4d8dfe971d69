"""Where kmat keeps caches: ``$KMAT_CACHE`` (default ``~/.cache/kmat``)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """``$KMAT_CACHE/<parts...>`` (created)."""
    root = Path(os.environ.get("KMAT_CACHE") or Path.home() / ".cache" / "kmat").expanduser()
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def content_hash(obj: object) -> str:
    """sha256 of the canonical JSON of ``obj`` (first 16 hex digits)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


_FILE_HASHES: dict[tuple, str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, memoised per path, size and modification time."""
    path = Path(path)
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
        _FILE_HASHES[key] = h.hexdigest()
    return _FILE_HASHES[key]
