"""``kmat reproduce``: run the paper's Table 2 or Table 3 grid and write the tables."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kmat.cli.options import add_method_flags, add_run_flags, method_options_from_args, option_default
from kmat.errors import ConfigError

HEAVY_HELP = (
    "run the paper's Table 2 or Table 3 grid and write the tables"  # its flags come from the method registry
)


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "reproduce",
        parents=parents,
        help=HEAVY_HELP,
        description="Run every method x task x seed (Table 2) or the eight K-MaT ablation "
        "rows (Table 3). Finished runs are skipped, so an interrupted grid resumes; "
        "a failed run is recorded in its error.json and the grid goes on. Writes "
        "OUT/runs/<task>/<method>/<shots>shot[-<options>]/seed<S>/result.json, OUT/table2.md or "
        "table3.md, OUT/results.csv and OUT/figures/. Method options (flags below, or -o NAME=VALUE) "
        "apply to every method of the grid that has them and are part of the run folders' names.",
    )
    p.add_argument("--table", type=int, choices=[2, 3], required=True)
    p.add_argument(
        "--tasks",
        nargs="+",
        default=None,
        help="task names (under --data-root) or task folders (default: skin1 skin2 chest breast)",
    )
    p.add_argument("--methods", nargs="+", default=None, help="Table 2 methods (default: all six)")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3], help="default: 1 2 3")
    p.add_argument("--out", default="kmat-results", help="output folder (default: kmat-results)")
    add_run_flags(
        p, exclude=("task", "out", "method", "seed", "augment", "feature_batch_size", "min_descriptions")
    )
    p.add_argument("--dry-run", action="store_true", help="list the runs and whether they are done")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="re-run runs whose folder holds a run of another configuration",
    )
    p.add_argument("--std", action="store_true", help="add ± std over seeds to the table cells")
    p.add_argument("--compare-paper", action="store_true", help="print the paper's published numbers too")
    p.add_argument("--no-figures", action="store_true")
    add_method_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kmat.methods import get_method
    from kmat.methods.config import options_of
    from kmat.run.experiments import PAPER_TASKS, TABLE2_METHODS, table2_grid, table3_grid
    from kmat.run.grid import GridSettings, resolve_tasks, run_grid

    if args.help_options:
        from kmat.cli.options import format_method_options

        for m in args.methods or [m for m, _ in TABLE2_METHODS]:
            print(format_method_options(m) + "\n")
        return 0
    out = Path(args.out)
    methods = (args.methods or [m for m, _ in TABLE2_METHODS]) if args.table == 2 else ["kmat"]
    options = method_options_from_args(args)
    for name in options:
        if not any(name in options_of(get_method(m).Config) for m in methods):
            raise ConfigError(
                f"no method of this grid ({', '.join(methods)}) has an option {name!r}", field=name
            )
    shots = getattr(args, "shots", option_default("shots"))
    tasks = resolve_tasks(args.tasks or PAPER_TASKS, getattr(args, "data_root", None))
    if args.table == 2:
        specs = table2_grid(tasks, methods, args.seeds, shots, options)
    else:
        specs = table3_grid(tasks, args.seeds, shots, options)
    settings = GridSettings(
        **{
            k: getattr(args, k)
            for k in ("backbone", "data_root", "device", "precision", "feature_cache")
            if hasattr(args, k)
        },
        show_progress=not args.quiet,
        overwrite=args.overwrite,
    )
    print(
        f"kmat reproduce --table {args.table}: {len(specs)} run(s) "
        f"({len(tasks)} task(s) x {len(specs) // max(1, len(tasks) * len(args.seeds))} configuration(s) "
        f"x {len(args.seeds)} seed(s)), backbone {settings.backbone}, output {out}"
    )
    report = run_grid(specs, out, settings, dry_run=args.dry_run)
    if args.dry_run:
        print(f"{len(report.pending)} pending, {len(report.skipped)} done")
        return 0
    from kmat.report.results import write_report

    write_report(out, (args.table,), args.std, args.compare_paper, figures=not args.no_figures)
    if report.failed:
        print(f"\n{len(report.failed)} run(s) failed (details in their error.json):", file=sys.stderr)
        for name, err in report.failed:
            print(f"  {name}: {err.splitlines()[0]}", file=sys.stderr)
        return 1
    return 0
