"""One writer per run folder: an advisory lock on a sibling file (``.seed1.lock`` beside ``seed1``).

Two ``kmat reproduce`` (or ``kmat train``) processes on the same output folder never write the same
run: the first takes the run's lock, the second finds it held and skips the run (a grid) or stops
with :class:`kmat.errors.RunBusyError` (a single run). The lock is ``flock`` on POSIX, so it is
released by the kernel when its holder dies (a killed run never leaves a stale lock); the lock file
is removed on release. Where ``flock`` does not exist (Windows), runs are not locked.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from kmat.errors import RunBusyError
from kmat.run.layout import RunLayout
from kmat.utils.io import output_errors

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def run_lock(folder: str | Path) -> Iterator[None]:
    """Hold the lock of the run in ``folder`` for the ``with`` block; :class:`RunBusyError` when
    another process holds it."""
    path = RunLayout.of(folder).lock_file
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    with output_errors(folder):  # a read-only or forbidden place fails here, before any work
        path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        with output_errors(folder):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunBusyError(
                f"{Path(folder)}: another kmat process is writing this run now (lock {path.name}); "
                "wait for it to finish"
            ) from None
        # The holder before us may have removed the file between our open and our lock: only a
        # lock on the file that is at ``path`` now counts.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
