"""``kmat train``: train one method on one task and evaluate it on both modalities."""

from __future__ import annotations

import argparse
from typing import Any

from kmat.cli._common import print_metrics
from kmat.cli.options import (
    add_method_flags,
    add_run_flags,
    format_method_options,
    method_options_from_args,
    read_config_file,
)
from kmat.errors import ConfigError

EPILOG = """examples:
  kmat train --task ./my_task --backbone local-dir:./tiny --epochs 2 --out runs/kmat-s1
  kmat train --task breast --data-root $KMAT_DATA --method kmat --shots 16 --seed 1 --out runs/kmat/seed1
  kmat train --task ./my_task --method kgcoop -o W=2 --out runs/kgcoop-w2
  kmat train --config runs/kmat-s1/config.json --out runs/kmat-s1-again
  kmat train --method biomedcoop --help-options

--task is a task folder (task.json + one manifest CSV per modality + descriptions.json) or the name
of a task prepared under --data-root / $KMAT_DATA. The run writes OUT/result.json (metrics in %),
OUT/config.json (re-run it with --config), OUT/checkpoint.safetensors (learned prompts + resolved
config), OUT/class_embeddings.safetensors (and OUT/head.safetensors for a method that classifies
with more than class embeddings) and the few-shot subset manifests. A folder that holds
a run of another configuration is not replaced unless --overwrite is given.
"""


# its flags come from the method registry, so it is built in full only when it is the command
HEAVY_HELP = "train one method on one task and evaluate it on both modalities"


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "train",
        parents=parents,
        help=HEAVY_HELP,
        description="Train a method on the high-end few-shot images of a task and evaluate it "
        "zero-shot on the low-end test split.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="run settings from a JSON or YAML file (every run writes one: OUT/config.json); "
        "flags given here override it",
    )
    add_run_flags(p)
    p.add_argument("--overwrite", action="store_true", help="replace a run of another configuration in --out")
    add_method_flags(p)
    p.set_defaults(func=run)


def run_config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`RunConfig` of ``--config`` (if any), then the flags given."""
    from kmat.methods.config import options_of
    from kmat.run.config import RunConfig

    data = read_config_file(args.config) if args.config else {}
    options = {**data.pop("options", {}), **method_options_from_args(args)}
    fields = {k: getattr(args, k) for k in options_of(RunConfig) if hasattr(args, k)}
    merged = {**data, **fields}
    for required in ("task", "out"):
        if not merged.get(required):
            raise ConfigError(f"kmat train needs --{required} (or '{required}' in the --config file)")
    return RunConfig(**merged, options=options, show_progress=not args.quiet)


def run(args: argparse.Namespace) -> int:
    if args.help_options:
        method = getattr(args, "method", None)
        if method is None and args.config:
            method = read_config_file(args.config).get("method")
        print(format_method_options(method or "kmat"))
        return 0
    from kmat.methods import get_method
    from kmat.methods.config import resolve_config
    from kmat.run.runner import run as run_one

    cfg = run_config_from_args(args)
    resolve_config(get_method(cfg.method).Config, cfg.options)  # bad method or option: before any loading
    result = run_one(cfg, overwrite=args.overwrite)
    print_metrics(
        result["metrics"],
        f"{result['method']} on {result['task']} ({result['shots']} shots, seed {result['seed']}):",
    )
    from kmat.run.layout import RunLayout

    print(f"wrote {RunLayout.of(cfg.out).result}")
    return 0
