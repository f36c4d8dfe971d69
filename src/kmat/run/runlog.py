"""A run's own logs: ``history.csv`` (one row per epoch) and ``log.txt`` (what was said while it ran).

``log.txt`` holds kmat's log records (the ``kmat.*`` loggers, at INFO and above) and the Python
warnings raised while the run computes, between a start line with the run's settings and an end
line with its timing. :func:`capture_run_log` collects them in memory, in the process that computes
the run (possibly a Ray worker), so that the text travels with the run's other results and is
written with them, as a unit, by whoever writes the run folder. Progress bars are not log records
and are never captured.

The capture changes nothing of what the user sees: the records the ``kmat`` logger would have
emitted before go where they went before (its handlers, the root logger's, or Python's last-resort
handler), the records it lowers its level to capture (INFO, when it was set higher) go only into the
run's log, and warnings are shown as before (through the ``warnings.showwarning`` in place).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from kmat.utils.io import csv_bytes

LOGGER = "kmat"
"""The logger whose records (and its children's) a run's log captures."""

LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FIRST_COLUMNS = ("epoch", "lr")


class RunLog:
    """The lines of one run's log, in the order they were said."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._formatter = logging.Formatter(LINE_FORMAT)

    def add_record(self, record: logging.LogRecord) -> None:
        self.lines.extend(self._formatter.format(record).splitlines() or [""])

    def add(self, message: str, level: int = logging.INFO, name: str = "kmat.run") -> None:
        """A line said by kmat itself (the run's start and end lines)."""
        self.add_record(
            logging.makeLogRecord(
                {"msg": message, "levelno": level, "levelname": logging.getLevelName(level), "name": name}
            )
        )

    def text(self) -> str:
        """The whole log (``log.txt``'s content): one line per entry, ending with a newline."""
        return "".join(f"{line}\n" for line in self.lines)


class _Dispatcher(logging.Handler):
    """Stands in for the ``kmat`` logger's handlers while a run is captured: records of the capturing
    thread go into the run's log; records at or above the level the logger had before go on to where
    they went before (the logger's own handlers, then the root logger's if it propagated, else
    Python's last-resort handler when there was no handler anywhere, as :meth:`logging.Logger.callHandlers`
    does)."""

    def __init__(
        self, run_log: RunLog, threshold: int, handlers: Sequence[logging.Handler], propagate: bool
    ) -> None:
        super().__init__(logging.NOTSET)
        self.run_log, self.threshold = run_log, threshold
        self.handlers, self.propagate = list(handlers), propagate
        self.thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.run_log.add_record(record)
        if record.levelno < self.threshold:
            return  # made only because the capture lowered the level: it belongs to the run's log alone
        found = _handlers_below(record.name)
        targets = self.handlers + (logging.getLogger().handlers if self.propagate else [])
        for h in targets:
            found += 1
            if record.levelno >= h.level:
                h.handle(record)
        last = logging.lastResort
        if not found and last is not None and record.levelno >= last.level:
            last.handle(record)


def _handlers_below(name: str) -> int:
    """How many handlers the record of logger ``name`` met on its way up to the ``kmat`` logger."""
    count, logger = 0, logging.getLogger(name)
    while logger.name != LOGGER and isinstance(logger, logging.Logger):
        count += len(logger.handlers)
        if not logger.propagate or logger.parent is None:
            break
        logger = logger.parent
    return count


def _warning_recorder(run_log: RunLog, previous: Any) -> Any:
    """A ``warnings.showwarning`` that adds the warning to the run's log, then shows it as before."""
    thread = threading.get_ident()

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        if threading.get_ident() == thread:
            run_log.add(f"{category.__name__}: {message}", logging.WARNING, "py.warnings")
        previous(message, category, filename, lineno, file, line)

    return show


@contextlib.contextmanager
def capture_run_log(level: int = logging.INFO) -> Iterator[RunLog]:
    """Collect the ``kmat`` loggers' records (``level`` and above) and the warnings raised in this
    thread while the block runs; what the user sees is unchanged (module docstring).

    Inside, every warning raised is shown again once per place (entering the block resets Python's
    "already shown" registry), so that each run's log holds its own warnings; the filters in force
    (``ignore``, ``error``) still apply."""
    logger = logging.getLogger(LOGGER)
    saved_level, saved_propagate, saved_handlers = logger.level, logger.propagate, list(logger.handlers)
    threshold = logger.getEffectiveLevel()
    run_log = RunLog()
    dispatcher = _Dispatcher(run_log, threshold, saved_handlers, saved_propagate)
    for h in saved_handlers:
        logger.removeHandler(h)
    logger.addHandler(dispatcher)
    logger.propagate = False
    logger.setLevel(min(threshold, level))
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_recorder(run_log, warnings.showwarning)
            yield run_log
    finally:
        logger.removeHandler(dispatcher)
        for h in saved_handlers:
            logger.addHandler(h)
        logger.propagate = saved_propagate
        logger.setLevel(saved_level)


def _cell(value: Any) -> Any:
    """A history value as a CSV cell: numbers and text as they are (floats in full precision),
    anything else as JSON, a missing value empty."""
    if value is None:
        return ""
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, sort_keys=True)


def history_columns(history: Sequence[dict[str, Any]]) -> list[str]:
    """``epoch`` and ``lr`` first, then every other key in the order it first appears (the union
    over the epochs: an epoch without a key leaves its cell empty)."""
    keys = dict.fromkeys(FIRST_COLUMNS)
    for rec in history:
        keys.update(dict.fromkeys(rec))
    return list(keys)


def history_csv_bytes(history: Sequence[dict[str, Any]]) -> bytes:
    """``history.csv``'s bytes: one row per epoch of a run's history (``result.json``'s ``history``)
    with every loss term, the lr and the per-epoch validation scores; only the header for a method
    that does not train."""
    columns = history_columns(history)
    return csv_bytes(columns, ([_cell(rec.get(c)) for c in columns] for rec in history))


def duration_text(seconds: float) -> str:
    """``"12.3 s"``, or ``"4 min 5.6 s"`` from a minute on."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)} min {rest:.1f} s"
