"""Where kmat keeps caches: ``$KMAT_CACHE`` (default ``~/.cache/kmat``).

:func:`cache_dir` is for callers that need the cache (the demo's generated data): it raises
:class:`~kmat.errors.CacheError` when the folder cannot be made. :func:`optional_cache_dir` is for
caches that only save time (features, prototypes): it answers ``None`` instead, and an unusable
cache, or a cache file that cannot be written (:func:`cache_write_failed`), is reported by one
warning per process that names the path and ``KMAT_CACHE``; the run goes on without the cache.

Opening a cache folder removes the temporary files of atomic writes that were killed (older than
:data:`STALE_TMP_S`) from it and its subfolders.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from kmat.errors import CacheError
from kmat.utils.io import remove_stale_temp_files

log = logging.getLogger(__name__)

STALE_TMP_S = 15 * 60
"""An atomic write's temporary file older than this (seconds) is an orphan of a killed write."""

_SWEPT: set[Path] = set()
_WARNED: set[str] = set()


def cache_root() -> Path:
    """``$KMAT_CACHE``, else ``~/.cache/kmat`` (not created)."""
    env = os.environ.get("KMAT_CACHE")
    if env:
        return Path(env).expanduser()
    try:
        home = Path.home()
    except (RuntimeError, KeyError) as err:
        raise CacheError(
            f"no home folder for the cache ({err}); set KMAT_CACHE to a writable folder"
        ) from err
    return home / ".cache" / "kmat"


def cache_dir(*parts: str) -> Path:
    """``$KMAT_CACHE/<parts...>`` (created); :class:`CacheError` if it cannot be."""
    path = cache_root().joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CacheError(
            f"cannot use the cache folder {path} ({err.strerror or err}); set KMAT_CACHE to a writable folder"
        ) from err
    if path not in _SWEPT:
        _SWEPT.add(path)
        for tmp in remove_stale_temp_files(path, STALE_TMP_S):
            log.debug("removed %s, left behind by a killed write", tmp)
    return path


def cache_needed_error(path: str | Path, err: Exception) -> CacheError:
    """The error for a write into the cache that the caller cannot do without (``err``: an
    ``OSError`` or the :class:`~kmat.errors.OutputError` an atomic write raises)."""
    why = getattr(err, "reason", None) or getattr(err, "strerror", None) or err
    return CacheError(f"cannot write {path} in the cache ({why}); set KMAT_CACHE to a writable folder")


def _warn_once(message: str) -> None:
    key = os.environ.get("KMAT_CACHE") or "~"
    if key in _WARNED:
        log.debug(message)
        return
    _WARNED.add(key)
    log.warning(message)


def optional_cache_dir(*parts: str) -> Path | None:
    """:func:`cache_dir`, or ``None`` (with one warning per process) when the cache is unusable."""
    try:
        return cache_dir(*parts)
    except CacheError as err:
        cause = err.__cause__
        if isinstance(cause, OSError):
            where = cache_root().joinpath(*parts)
            _warn_once(
                f"cannot use the cache folder {where} ({cause.strerror or cause}); continuing without a "
                "cache (set KMAT_CACHE to a writable folder)"
            )
        else:
            _warn_once(f"{err}; continuing without a cache")
        return None


def cache_write_failed(path: str | Path, err: Exception) -> None:
    """Report a cache file that could not be written (one warning per process); the caller goes on."""
    why = getattr(err, "reason", None) or getattr(err, "strerror", None) or err
    _warn_once(
        f"cannot write the cache file {path} ({why}); continuing without caching it "
        "(set KMAT_CACHE to a writable folder)"
    )


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
