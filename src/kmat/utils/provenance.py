"""Where a run's code came from: the git commit of kmat's source when it runs from a checkout."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the kmat package folder


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):  # no git, or it hangs
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.cache
def source_commit(folder: Path = PACKAGE_DIR) -> str | None:
    """``git rev-parse HEAD`` of the checkout that holds kmat's source (``folder``), with
    ``-dirty`` appended when tracked files differ from it; ``None`` when kmat is not run from a git
    checkout (an installed package), or git is absent. Only a checkout that tracks the package's own
    ``__init__.py`` counts (not, say, a project repository that holds a virtual environment).
    Asked once per process."""
    if _git(folder, "ls-files", "--error-unmatch", "__init__.py") is None:
        return None
    head = _git(folder, "rev-parse", "HEAD")
    if not head:
        return None
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    return f"{head}-dirty" if status else head
