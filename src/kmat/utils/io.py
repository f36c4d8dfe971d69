"""Atomic file writing: results and caches are never half-written."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

_WRITES = 0


def _fault_point(path: Path) -> None:
    """Fault injection for tests: with ``KMAT_FAULT_KILL_AT_WRITE=N`` the process dies (as if
    killed) just before the N-th atomic write of this process would rename its finished file."""
    global _WRITES
    at = os.environ.get("KMAT_FAULT_KILL_AT_WRITE")
    if not at:
        return
    _WRITES += 1
    if _WRITES == int(at):
        os._exit(137)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary sibling and a rename: readers see the old file
    or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; results are ordinary files
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _fault_point(path)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_json(path: str | Path, obj: object) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode("utf-8"))


def atomic_save_safetensors(path: str | Path, tensors: dict, metadata: dict[str, str] | None = None) -> Path:
    """``tensors`` (name -> torch tensor) as a safetensors file, written atomically."""
    from safetensors.torch import save

    return atomic_write_bytes(path, save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata))


def csv_bytes(
    header: Sequence[object], rows: Iterable[Sequence[object]], lineterminator: str = "\r\n"
) -> bytes:
    """A CSV file's bytes (UTF-8): ``header`` then ``rows``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator=lineterminator)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")
