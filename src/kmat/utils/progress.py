"""Progress bars (tqdm) on stderr: refreshed every 5 s when stderr is not a terminal (logs stay short)."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def progress(total: int | None = None, desc: str = "", unit: str = "it", disable: bool = False, **kw) -> tqdm:
    """A tqdm bar on stderr; ``KMAT_PROGRESS=0`` hides all bars, ``=1`` keeps the fast refresh off a terminal."""
    env = os.environ.get("KMAT_PROGRESS")
    if env == "0":
        disable = True
    elif env != "1" and not sys.stderr.isatty():
        kw.setdefault("mininterval", 5.0)
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, leave=False, dynamic_ncols=True, **kw)
