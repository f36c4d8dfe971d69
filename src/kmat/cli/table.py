"""``kmat table``: rebuild tables, results.csv and figures from a grid's runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from kmat.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "table",
        parents=parents,
        help="rebuild the tables, results.csv and figures from the runs in DIR",
        description="Rebuild OUT/table2.md, table3.md, sensitivity.md, results.csv and figures from "
        "whatever result.json files exist under DIR/runs (a grid: kmat reproduce, kmat demo) and "
        "DIR/final (a tune's final runs, as '<method> tuned'; only Table 2 by default). A run that "
        "is not strictly zero-shot (kmat tune --select-on low-val) gets a column of its own marked † "
        "and a footnote, and strict_zero_shot=False in results.csv; it is never averaged with strict "
        "runs. A run whose result.json is unreadable or "
        "invalid (e.g. a NaN metric), and a cell whose runs differ in configuration (e.g. one seed "
        "with other epochs), is left out of the tables with a warning naming it; the tables say how "
        "many runs they leave out. A cell whose seeds count differs from the others is named under "
        "the table.",
    )
    p.add_argument("dir")
    p.add_argument(
        "--table",
        choices=["2", "3", "sensitivity"],
        nargs="+",
        default=None,
        help="default: 2 and 3 (2 only for a tune's folder), and sensitivity when DIR has runs of "
        "the sensitivity grid",
    )
    p.add_argument("--std", action="store_true")
    p.add_argument("--compare-paper", action="store_true")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail (exit status 2, writing nothing) if any run would be left out of the tables",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kmat.run.layout import FINAL_DIR, RUNS_DIR

    out = Path(args.dir)
    if not (out / RUNS_DIR).is_dir() and not (out / FINAL_DIR).is_dir():
        raise ConfigError(
            f"{out}: no {RUNS_DIR}/ or {FINAL_DIR}/ folder (is this a kmat reproduce or kmat tune output folder?)"
        )
    from kmat.report.results import write_report

    write_report(
        out, args.table, args.std, args.compare_paper, figures=not args.no_figures, strict=args.strict
    )
    return 0
