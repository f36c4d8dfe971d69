"""Progress on stderr: tqdm bars on a terminal, plain lines elsewhere (a log file stays readable).

``KMAT_PROGRESS``: ``0`` hides all progress; ``1`` forces tqdm bars (fast refresh) even off a
terminal; ``lines`` forces plain lines even on a terminal; unset: bars on a terminal, plain lines
otherwise (at most one line every 10 s per bar, and one when it ends: no cursor codes, no ``\\r``).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from tqdm.auto import tqdm

LINE_INTERVAL_S = 10.0


class LineProgress:
    """A progress report in plain lines with the part of tqdm's interface kmat uses (``update``,
    ``set_postfix``, ``close``, a context manager)."""

    def __init__(
        self,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        disable: bool = False,
        mininterval: float = LINE_INTERVAL_S,
        **_: Any,
    ) -> None:
        self.total, self.desc, self.unit, self.disable = total, desc, unit, disable
        self.interval = mininterval
        self.n = 0
        self.postfix = ""
        self.start = self.last = time.monotonic()
        self.closed = False

    def _line(self, final: bool = False) -> None:
        done = f"{self.n}/{self.total}" if self.total is not None else str(self.n)
        took = f" in {time.monotonic() - self.start:.1f} s" if final else ""
        post = f" ({self.postfix})" if self.postfix else ""
        print(f"{self.desc or 'progress'}: {done} {self.unit}{took}{post}", file=sys.stderr, flush=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if not self.disable and now - self.last >= self.interval:
            self.last = now
            self._line()

    def set_postfix(
        self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kw: Any
    ) -> None:
        items = {**(ordered_dict or {}), **kw}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.disable and self.n:
            self._line(final=True)

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(
    total: int | None = None, desc: str = "", unit: str = "it", disable: bool = False, **kw: Any
) -> Any:
    """A progress bar on stderr (see the module docstring for ``KMAT_PROGRESS``)."""
    env = os.environ.get("KMAT_PROGRESS")
    if env == "0":
        disable = True
    if env == "lines" or (env != "1" and not sys.stderr.isatty()):
        return LineProgress(total=total, desc=desc, unit=unit, disable=disable, **kw)
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, leave=False, dynamic_ncols=True, **kw)
