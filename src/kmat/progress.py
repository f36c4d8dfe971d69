"""Progress bars (tqdm), silenced when not attached to a terminal unless forced."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def progress(total: int | None = None, desc: str = "", unit: str = "it", disable: bool = False, **kw) -> tqdm:
    """A tqdm bar on stderr; ``KMAT_PROGRESS=0`` hides all bars, ``=1`` forces them."""
    env = os.environ.get("KMAT_PROGRESS")
    if env == "0":
        disable = True
    elif env != "1" and not sys.stderr.isatty():
        kw.setdefault("mininterval", 5.0)
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, leave=False, dynamic_ncols=True, **kw)
