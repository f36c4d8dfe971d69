"""The ``kmat`` command: the only place that parses arguments. One module per verb, each with
``add_parser(sub, parents)`` and ``run(args) -> int``; options of runs and methods are generated
from their config dataclasses (:mod:`kmat.cli.options`)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from kmat import __version__

VERBS = [
    "train",
    "evaluate",
    "reproduce",
    "tune",
    "table",
    "prepare",
    "tasks",
    "describe",
    "predict",
    "bench",
    "backbone",
    "toy_task",
    "demo",
    "demo_backbone",
]


def _common_flags() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("output")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    g.add_argument("-v", "--verbose", action="count", default=0, help="debug messages")
    return common


def build_parser(command: str | None = "*") -> argparse.ArgumentParser:
    """The whole parser; with ``command``, verbs whose options need the method registry (and so
    torch) are built in full only if they are that command (others get a stub for the listing)."""
    parser = argparse.ArgumentParser(
        prog="kmat",
        description="Cross-modal prompt learning on frozen medical vision-language models "
        "(K-MaT and baselines).",
    )
    parser.add_argument("--version", action="version", version=f"kmat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parents = [_common_flags()]
    for verb in VERBS:
        mod = importlib.import_module(f"kmat.cli.{verb}")
        name = verb.replace("_", "-")
        if command != "*" and command != name and getattr(mod, "HEAVY_HELP", None):
            sub.add_parser(name, help=mod.HEAVY_HELP)
        else:
            mod.add_parser(sub, parents)
    return parser


def _command(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    import warnings

    from kmat.cli._common import flag_hint, setup_logging
    from kmat.errors import KmatError

    try:
        argv = sys.argv[1:] if argv is None else argv
        parser = build_parser(_command(argv))
        args = parser.parse_args(argv)
    except KmatError as err:  # a broken method registration, reported like any other input error
        print(f"kmat: error: {err}", file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.verbose)
    seen: set[str] = set()

    def _show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        text = str(message)
        if text not in seen:  # each distinct warning once per command
            seen.add(text)
            print(f"kmat: warning: {text}", file=sys.stderr)

    warnings.showwarning = _show

    try:
        return int(args.func(args) or 0)
    except KmatError as err:
        if os.environ.get("KMAT_DEBUG"):
            raise
        print(f"kmat: error: {err}{flag_hint(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kmat: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
