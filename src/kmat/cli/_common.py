"""What the verbs share: printing metrics, logging set-up, turning errors into one line."""

from __future__ import annotations

import logging
import sys

from kmat.errors import KmatError


def print_metrics(metrics: dict, title: str) -> None:
    print(title)
    print(f"  {'':6s} {'acc':>7s} {'macro-F1':>9s}")
    for role, label in (("high", "Hi"), ("low", "Lo"), ("h", "H")):
        m = metrics[role]
        print(f"  {label:6s} {m['acc']:7.2f} {m['macro_f1']:9.2f}")


class _Below(logging.Filter):
    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


def setup_logging(verbose: int = 0) -> None:
    """The library's ``kmat.*`` loggers: status lines to stdout, warnings and errors to stderr as
    ``kmat: warning: ...``; ``-v`` adds debug lines."""
    logger = logging.getLogger("kmat")
    for h in list(logger.handlers):
        logger.removeHandler(h)
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(_Below(logging.WARNING))
    out.setFormatter(logging.Formatter("%(message)s"))
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    err.setFormatter(_LevelFormatter())
    logger.addHandler(out)
    logger.addHandler(err)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    logging.raiseExceptions = False  # output piped into e.g. `head`: no logging traceback on a closed pipe


class _LevelFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"kmat: {record.levelname.lower()}: {record.getMessage()}"


def flag_hint(err: KmatError) -> str:
    """`` [--lambda-fgw / -o lambda_fgw=...]``: the flag that sets the field at fault, if any."""
    field = getattr(err, "field", None)
    if not field:
        return ""
    flag = "--" + field.replace("_", "-")
    from kmat.run.config import RunConfig

    if field in RunConfig.__dataclass_fields__:
        return f" [{flag}]"
    return f" [{flag}, or -o {field}=VALUE]"
