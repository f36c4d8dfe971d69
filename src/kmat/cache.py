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
