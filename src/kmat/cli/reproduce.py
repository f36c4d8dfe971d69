"""``kmat reproduce``: run the paper's Table 2 (or Table 2+, every registered method) or Table 3 grid,
or K-MaT's sensitivity grid, and write the tables."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from kmat.cli._common import add_executor_flags, executor_from_args
from kmat.cli.options import add_method_flags, add_run_flags, method_options_from_args, option_default
from kmat.errors import ConfigError

HEAVY_HELP = (  # its flags come from the method registry
    "run the paper's Table 2 (2+: every registered method) or Table 3 grid, or K-MaT's sensitivity "
    "grid, and write the tables"
)

# --sens-<flag>: the option of K-MaT whose values it lists
SENS_FLAGS = {
    "alpha": "--sens-alpha",
    "lambda_fgw": "--sens-lambda-fgw",
    "lambda_anchor": "--sens-lambda-anchor",
}


def _sens_value(name: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        from kmat.methods import get_method
        from kmat.methods.config import check_value, options_of, parse_value

        config = get_method("kmat").Config
        info = options_of(config)[name]
        try:
            return float(check_value(info, parse_value(info, text), config.__name__))
        except ConfigError as err:  # argparse shows this message with the flag's name
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = name
    return parse


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "reproduce",
        parents=parents,
        help=HEAVY_HELP,
        description="Run every method x task x seed (Table 2; Table 2+: the paper's six methods, then "
        "every other registered method, e.g. ProGrad and the adapters), the eight K-MaT ablation "
        "rows (Table 3), or K-MaT over alpha x lambda_fgw x lambda_anchor (sensitivity; the cell "
        "lambda_fgw = 0 once, as alpha then has no effect). Finished runs are skipped, so an "
        "interrupted grid resumes; a failed run is recorded in its error.json and the grid goes on. "
        "Writes OUT/runs/<task>/<label>/<shots>shot[-<options>]/seed<S>/result.json (label: the "
        "method, the ablation row, or kmat-sens), OUT/table2.md, table3.md or sensitivity.md, "
        "OUT/results.csv and OUT/figures/. Method options (flags below, or -o NAME=VALUE) apply to "
        "every method of the grid that has them and are part of the run folders' names.",
    )
    p.add_argument(
        "--table",
        choices=["2", "2+", "3", "sensitivity"],
        required=True,
        help="2: methods x tasks x seeds (the paper's six, or --methods); 2+: the same with every "
        "registered method, the paper's six first (written as table2.md; a method of Table 2+ not "
        "installed here is skipped with a note); 3: the ablation; sensitivity: K-MaT over alpha x "
        "lambda_fgw x lambda_anchor",
    )
    p.add_argument(
        "--tasks",
        nargs="+",
        default=None,
        help="task names (under --data-root) or task folders (default: skin1 skin2 chest breast)",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help="Table 2 methods: any registered method (default: the paper's six, zeroshot coop kgcoop "
        "cocoop biomedcoop kmat; --table 2+ for all)",
    )
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
    p.add_argument(
        "--strict",
        action="store_true",
        help="after the grid, fail (exit status 2, writing no table) if any run under OUT would be "
        "left out of the tables (an invalid result.json, runs of one cell with different configurations)",
    )
    from kmat.run.experiments import SENSITIVITY_VALUES  # the registry, as add_method_flags below

    g = p.add_argument_group(
        "sensitivity grid (--table sensitivity; every other K-MaT option at its default)"
    )
    for name, flag in SENS_FLAGS.items():
        default = " ".join(f"{v:g}" for v in SENSITIVITY_VALUES[name])
        g.add_argument(
            flag,
            nargs="+",
            type=_sens_value(name),
            default=None,
            metavar=name.upper(),
            help=f"values of {name} (default: {default})",
        )
    add_executor_flags(p)
    add_method_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kmat.methods import available_methods, get_method
    from kmat.methods.config import options_of
    from kmat.run.experiments import (
        PAPER_TASKS,
        TABLE2_METHODS,
        sensitivity_grid,
        table2_grid,
        table2_plus_methods,
        table3_grid,
    )
    from kmat.run.grid import GridSettings, resolve_tasks, run_grid

    if args.methods:
        unknown = sorted(set(args.methods) - set(available_methods()))
        if unknown:
            raise ConfigError(
                f"--methods: unknown method(s) {', '.join(unknown)}; registered: {', '.join(available_methods())}",
                field="method",
            )
        args.methods = list(dict.fromkeys(args.methods))  # a name given twice runs once
    wide, skipped = table2_plus_methods() if args.table == "2+" else ([], [])
    if args.help_options:
        from kmat.cli.options import format_method_options

        for m in args.methods or wide or [m for m, _ in TABLE2_METHODS]:
            print(format_method_options(m) + "\n")
        return 0
    out = Path(args.out)
    executor = None if args.dry_run else executor_from_args(args)
    sens_values = {name: getattr(args, f"sens_{name}") for name in SENS_FLAGS}
    if args.table != "sensitivity":
        given = [SENS_FLAGS[name] for name, v in sens_values.items() if v is not None]
        if given:
            raise ConfigError(f"{', '.join(given)}: only with --table sensitivity")
    if args.methods and args.table != "2":
        why = (
            "Table 2+ runs every registered method"
            if args.table == "2+"
            else "Table 3 and the sensitivity grid are K-MaT's"
        )
        raise ConfigError(f"--methods: only with --table 2 ({why}, got {args.methods})")
    if args.table == "2":
        methods = args.methods or [m for m, _ in TABLE2_METHODS]
    else:
        methods = wide if args.table == "2+" else ["kmat"]
    if skipped:
        print(f"Table 2+: {', '.join(skipped)} not registered here: skipped")
    options = method_options_from_args(args)
    for name in options:
        if not any(name in options_of(get_method(m).Config) for m in methods):
            raise ConfigError(
                f"no method of this grid ({', '.join(methods)}) has an option {name!r}", field=name
            )
    shots = getattr(args, "shots", option_default("shots"))
    tasks = resolve_tasks(args.tasks or PAPER_TASKS, getattr(args, "data_root", None))
    if args.table in ("2", "2+"):
        specs = table2_grid(tasks, methods, args.seeds, shots, options)
    elif args.table == "3":
        specs = table3_grid(tasks, args.seeds, shots, options)
    else:
        specs = sensitivity_grid(
            tasks,
            args.seeds,
            shots,
            options,
            alphas=sens_values["alpha"],
            lambda_fgws=sens_values["lambda_fgw"],
            lambda_anchors=sens_values["lambda_anchor"],
        )
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
    report = run_grid(specs, out, settings, dry_run=args.dry_run, executor=executor)
    if args.dry_run:
        print(f"{len(report.pending)} pending, {len(report.skipped)} done")
        return 0
    from kmat.report.results import write_report

    try:
        write_report(
            out,
            ("2",) if args.table == "2+" else (args.table,),
            args.std,
            args.compare_paper,
            figures=not args.no_figures,
            strict=args.strict,
        )
    finally:
        if report.busy:
            print(
                f"\n{len(report.busy)} run(s) were being run by another kmat process and are not in these "
                f"tables yet; when it is done, `kmat table {out}` rebuilds them",
                file=sys.stderr,
            )
        _print_failed(report.failed)
    return 1 if report.failed else 0


def _print_failed(failed: list[tuple[str, str]]) -> None:
    if failed:
        print(f"\n{len(failed)} run(s) failed (details in their error.json):", file=sys.stderr)
        for name, err in failed:
            print(f"  {name}: {err.splitlines()[0]}", file=sys.stderr)
