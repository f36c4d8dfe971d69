"""Atomic file writing: results and caches are never half-written.

A write that fails because of where it goes (a full disk or quota, a read-only or forbidden folder,
a file where a folder must be) raises :class:`kmat.errors.OutputError` naming the path and what to
do, and leaves no temporary file behind; other ``OSError`` s are raised as they are.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from kmat.errors import OutputError

_WRITES = 0

_SPACE = "free some space, or choose an output folder on another disk"
_WRITABLE = "choose an output folder you may write to"
# errno -> (what happened, what to do)
_REASONS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on the device", _SPACE),
    errno.EROFS: ("read-only file system", _WRITABLE),
    errno.EACCES: ("permission denied", _WRITABLE),
    errno.EPERM: ("operation not permitted", _WRITABLE),
}
if hasattr(errno, "EDQUOT"):  # not on Windows
    _REASONS[errno.EDQUOT] = ("disk quota exceeded", _SPACE)
OUTPUT_ERRNOS = frozenset(_REASONS)
"""The ``errno`` values of an :class:`OutputError`: the output place, not the data, is at fault."""


def file_in_the_way(path: str | Path) -> Path | None:
    """The first of ``path``'s parents that exists and is not a folder (nothing can be made under
    it), else None."""
    for parent in reversed(Path(path).parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def output_error(err: OSError, path: str | Path) -> OutputError | None:
    """``err`` (raised while writing ``path``) as an :class:`OutputError`, or None when it is no
    fault of the output place."""
    if err.errno in _REASONS:
        what, todo = _REASONS[err.errno]
        return OutputError(path, f"cannot write ({what}); {todo}", field="out")
    if err.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        blocker = file_in_the_way(path)
        if blocker is not None:
            return OutputError(
                path, f"{blocker} is a file, not a folder, so nothing can be written under it", field="out"
            )
        if err.errno == errno.EISDIR or Path(path).is_dir():
            return OutputError(path, "is a folder; give the path of a file", field="out")
        if err.errno == errno.EEXIST and Path(path).exists():
            return OutputError(path, "is a file, not a folder; choose a folder", field="out")
    return None


@contextlib.contextmanager
def output_errors(path: str | Path) -> Iterator[None]:
    """Raise an ``OSError`` of the ``with`` block that is the output place's fault
    (:func:`output_error`) as an :class:`OutputError` naming ``path``."""
    try:
        yield
    except OSError as err:
        out = output_error(err, path)
        if out is None:
            raise
        raise out from err


def check_output_folder(path: str | Path) -> Path:
    """``path`` can be (or is) a folder: it is not a file and lies under no file; else :class:`OutputError`."""
    path = Path(path)
    blocker = file_in_the_way(path)
    if blocker is not None:
        raise OutputError(
            path, f"{blocker} is a file, not a folder; choose another output folder", field="out"
        )
    if path.exists() and not path.is_dir():
        raise OutputError(path, "is a file, not a folder; choose another output folder", field="out")
    return path


def check_output_file(path: str | Path) -> Path:
    """``path`` can be written as a file: it is not a folder and lies under no file; else
    :class:`OutputError`."""
    path = Path(path)
    blocker = file_in_the_way(path)
    if blocker is not None:
        raise OutputError(path, f"{blocker} is a file, not a folder; choose another output path", field="out")
    if path.is_dir():
        raise OutputError(path, "is a folder; give the path of a file to write", field="out")
    return path


def probe_writable(folder: str | Path) -> Path:
    """Make ``folder`` (and its parents) and check that a file can be created in it (the file is
    removed again); :class:`OutputError` if not. A full disk may still let this pass."""
    folder = check_output_folder(folder)
    with output_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".kmat-probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    return folder


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
    with output_errors(path):
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
            with contextlib.suppress(OSError):
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
