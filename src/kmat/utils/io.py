"""Atomic file writing: results and caches are never half-written.

An atomic write goes through a temporary sibling ``.<name>.<random>.tmp`` (see :data:`TMP_SUFFIX`)
and a rename; a process killed in between leaves that temporary file behind, which
:func:`remove_stale_temp_files` clears away later.

Safetensors files written here carry the sha256 of their tensor bytes (the data section after the
header) in their metadata under :data:`CHECKSUM_KEY`; :func:`read_safetensors` checks it, so that a
file whose data was zeroed or flipped under an intact header is seen as damaged. Files written
before the checksum existed are read unverified.

A write that fails because of where it goes (a full disk or quota, a read-only or forbidden folder,
a file where a folder must be) raises :class:`kmat.errors.OutputError` naming the path and what to
do, and leaves no temporary file behind; other ``OSError`` s are raised as they are.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kmat.errors import OutputError

if TYPE_CHECKING:
    from torch import Tensor

log = logging.getLogger(__name__)

TMP_SUFFIX = ".tmp"
"""Suffix of an atomic write's temporary file (its name is ``.<target name>.<random><TMP_SUFFIX>``)."""

CHECKSUM_KEY = "kmat_sha256"
"""Safetensors metadata key holding the sha256 (hex) of the file's tensor bytes."""


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
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
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


def read_text_file(
    path: str | Path, error: type[Exception], what: str = "file", name: str | None = None
) -> str:
    """The text of ``path`` (UTF-8, with or without a byte-order mark, as Excel's "CSV UTF-8"
    writes it); an unreadable or non-UTF-8 file raises ``error`` with a message that starts with
    ``name`` (default: the path) and says what is wrong."""
    path = Path(path)
    name = name or str(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise error(f"{name}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from None
    except OSError as err:
        raise error(f"{name}: cannot read the {what} ({err.strerror or err})") from None


def read_json_file(path: str | Path, error: type[Exception], what: str = "JSON file") -> object:
    """The parsed JSON of ``path`` (:func:`read_text_file`); an unreadable, non UTF-8 or invalid
    file raises ``error`` with a message that names the file and says what is wrong."""
    text = read_text_file(path, error, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise error(f"{path}: invalid JSON: {err}") from None


def atomic_write_json(path: str | Path, obj: object) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode("utf-8"))


def remove_stale_temp_files(folder: str | Path, older_than_s: float, depth: int = 1) -> list[Path]:
    """Delete the temporary files (``.<name>.<random>.tmp``) that killed atomic writes left in
    ``folder`` and, ``depth`` levels down, its subfolders, when last modified more than
    ``older_than_s`` seconds ago (a younger one may belong to a write in progress). Returns what
    was removed; a file that cannot be removed is left alone."""
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                if depth > 0:
                    removed += remove_stale_temp_files(entry.path, older_than_s, depth - 1)
            elif (
                entry.name.startswith(".")
                and entry.name.endswith(TMP_SUFFIX)
                and entry.is_file(follow_symlinks=False)
                and now - entry.stat(follow_symlinks=False).st_mtime > older_than_s
            ):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


class DamagedFileError(ValueError):
    """A safetensors file is not what was written: bad header, checksum mismatch or non-finite values."""


def _split_safetensors(blob: bytes) -> tuple[dict, bytes]:
    """``(header, tensor bytes)`` of a serialised safetensors file."""
    if len(blob) < 8:
        raise DamagedFileError(f"{len(blob)} bytes, shorter than a safetensors header")
    n = int.from_bytes(blob[:8], "little")
    if n == 0 or n > len(blob) - 8:
        raise DamagedFileError(f"header length {n} does not fit a {len(blob)}-byte file")
    try:
        header = json.loads(blob[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DamagedFileError(f"unreadable header ({err})") from err
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__") or {}, dict):
        raise DamagedFileError("the header is not a safetensors header")
    return header, blob[8 + n :]


def safetensors_bytes(
    tensors: dict[str, Tensor], metadata: dict[str, str] | None = None, checksum: bool = True
) -> bytes:
    """``tensors`` serialised as safetensors, with the sha256 of their bytes in the metadata unless
    ``checksum`` is false."""
    from safetensors.torch import save

    tensors = {k: v.contiguous() for k, v in tensors.items()}
    meta = {k: v for k, v in (metadata or {}).items() if k != CHECKSUM_KEY}
    blob = save(tensors, metadata=meta or None)
    if not checksum:
        return blob
    _, data = _split_safetensors(blob)  # the tensor bytes do not depend on the metadata
    meta[CHECKSUM_KEY] = hashlib.sha256(data).hexdigest()
    return save(tensors, metadata=meta)


def atomic_save_safetensors(
    path: str | Path,
    tensors: dict[str, Tensor],
    metadata: dict[str, str] | None = None,
    checksum: bool = True,
) -> Path:
    """``tensors`` (name -> torch tensor) as a safetensors file, written atomically; with the
    checksum that :func:`read_safetensors` verifies unless ``checksum`` is false (model weights,
    whose file bytes are their identity)."""
    return atomic_write_bytes(path, safetensors_bytes(tensors, metadata, checksum))


def read_safetensors(path: str | Path, finite: bool = True) -> tuple[dict[str, Tensor], dict[str, str], bool]:
    """``(tensors, metadata, verified)`` of a safetensors file, its checksum checked.

    ``verified`` is false for a file without a checksum (written before kmat recorded them). Raises
    :class:`OSError` when the file cannot be read and :class:`DamagedFileError` when it is damaged:
    not safetensors, tensor bytes that do not match the recorded checksum, or (with ``finite``)
    NaN or infinite values in a floating-point tensor. The tensors own their memory.
    """
    import torch
    from safetensors.torch import load

    blob = Path(path).read_bytes()
    header, data = _split_safetensors(blob)
    meta = {str(k): str(v) for k, v in (header.get("__metadata__") or {}).items()}
    want = meta.get(CHECKSUM_KEY)
    if want is not None:
        got = hashlib.sha256(data).hexdigest()
        if got != want:
            raise DamagedFileError(
                f"checksum mismatch: its tensor bytes hash to {got[:12]}..., {want[:12]}... was recorded"
            )
    else:
        log.debug("%s has no checksum (written before kmat recorded them); read unverified", path)
    try:
        tensors = {k: v.clone() for k, v in load(blob).items()}  # not views of the read-only bytes
    except Exception as err:  # safetensors raises its own error types for malformed files
        raise DamagedFileError(f"not a readable safetensors file ({type(err).__name__}: {err})") from err
    if finite:
        bad = sorted(k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all())
        if bad:
            raise DamagedFileError(f"non-finite values in {bad}")
    return tensors, meta, want is not None


def csv_bytes(
    header: Sequence[object], rows: Iterable[Sequence[object]], lineterminator: str = "\r\n"
) -> bytes:
    """A CSV file's bytes (UTF-8): ``header`` then ``rows``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator=lineterminator)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")
