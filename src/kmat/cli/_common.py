"""What the verbs share: printing metrics, logging set-up, turning errors into one line."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from kmat.errors import ConfigError, KmatError


def print_metrics(metrics: dict, title: str, absent: str = "absent") -> None:
    """Hi, Lo and H (accuracy and macro-F1, %) under ``title``; a ``None`` entry prints ``absent``."""
    print(title)
    print(f"  {'':6s} {'acc':>7s} {'macro-F1':>9s}")
    for role, label in (("high", "Hi"), ("low", "Lo"), ("h", "H")):
        m = metrics[role]
        if m is None:
            print(f"  {label:6s} {absent}")
        else:
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


def add_executor_flags(p: argparse.ArgumentParser, workers_help: str | None = None) -> None:
    """``--executor`` and the Ray flags of a command that runs a grid (or trials: ``workers_help``
    says what ``--workers`` counts there)."""
    g = p.add_argument_group("where the runs are computed (see the README, 'Run on a cluster')")
    g.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help="local: one run after another in this process (default); ray: every run a Ray task "
        "(needs the cluster extra: pip install 'kmat[cluster]'); this process still writes every run folder",
    )
    g.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="with --executor ray: 'auto' or HOST:PORT joins a running Ray cluster (default: start a "
        "local Ray instance on this machine)",
    )
    g.add_argument(
        "--gpus-per-run",
        type=float,
        default=0.0,
        metavar="G",
        help="with --executor ray: GPUs each run asks for; fractions share a GPU (0.25: four runs per GPU; "
        "default 0: CPU runs)",
    )
    g.add_argument(
        "--cpus-per-run",
        type=float,
        default=1.0,
        metavar="C",
        help="with --executor ray: CPUs per run (default 1)",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help=workers_help
        or "with --executor ray: at most N runs at a time (default: as many as the resources allow)",
    )
    g.add_argument(
        "--max-retries",
        type=int,
        default=2,
        metavar="N",
        help="with --executor ray: times a run is retried when its worker or node dies (default 2)",
    )
    g.add_argument(
        "--data-resource",
        default=None,
        metavar="NAME",
        help="with --executor ray: encode images only on the nodes that offer this Ray resource (started "
        "with ray start --resources '{\"NAME\": 1}': the nodes holding the datasets); default: any node",
    )


def executor_from_args(args: argparse.Namespace) -> Any:
    """The executor the flags ask for: ``None`` (local) or a Ray executor; a one-line error when the
    Ray flags come without ``--executor ray`` or Ray is not installed."""
    if args.executor != "ray":
        given = [
            flag
            for flag, name, default in (
                ("--ray-address", "ray_address", None),
                ("--gpus-per-run", "gpus_per_run", 0.0),
                ("--cpus-per-run", "cpus_per_run", 1.0),
                ("--workers", "workers", None),
                ("--max-retries", "max_retries", 2),
                ("--data-resource", "data_resource", None),
            )
            if getattr(args, name) != default
        ]
        if given:
            raise ConfigError(f"{', '.join(given)}: only with --executor ray")
        return None
    from kmat.tools.ray_executor import RayExecutor, import_ray

    try:
        import_ray()
        return RayExecutor(
            address=args.ray_address,
            cpus_per_run=args.cpus_per_run,
            gpus_per_run=args.gpus_per_run,
            workers=args.workers,
            max_retries=args.max_retries,
            data_resource=args.data_resource,
        )
    except ConfigError as err:
        raise ConfigError(f"--executor ray: {err}") from None
