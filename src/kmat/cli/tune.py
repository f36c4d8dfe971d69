"""``kmat tune``: search a method's options with Optuna, then run the best configuration on every seed."""

from __future__ import annotations

import argparse
from pathlib import Path

from kmat.cli._common import add_executor_flags, executor_from_args, print_metrics
from kmat.cli.options import add_method_flags, add_run_flags, method_options_from_args
from kmat.errors import ConfigError

HEAVY_HELP = (
    "search a method's options (Optuna), then evaluate the best configuration"  # flags from the registry
)

EPILOG = """search space (--space, one entry per option of the method; see --help-options):
  NAME=LOW:HIGH          uniform float (integers for an int option)
  NAME=LOW:HIGH:log      log-uniform
  NAME=LOW:HIGH:int      integers (add :log for log-spaced ones)
  NAME=V1,V2,V3          one of these values

examples:
  kmat tune --task breast --space lambda_anchor=0.1:10:log lambda_fgw=0.1:10:log --trials 30 \\
      --seeds 1 2 3 --out tune/breast
  kmat tune --task ./my_task --backbone local-dir:./tiny --epochs 2 --space alpha=0.1,0.5,0.9 \\
      --trials 6 --out tune/toy

--select-on high-val (the default, the paper's protocol) scores a trial by the accuracy on the
high-end validation split, averaged over --seeds; no low-end image or label is read until the
final evaluation. --select-on low-val scores it on the low-end validation split: it peeks at the
target modality, and every result it produces is marked "low-val (not strict zero-shot)".

Trials run one after another in this process (--executor local, the default), or as Ray tasks
(--executor ray: every run of a trial, one per seed, is a task; up to --workers trials are asked
at once, TPE's constant liar keeping them apart). OUT/optuna.db holds the study: run the same
command again to resume an interrupted tune (finished trials are kept, trials left running are
marked interrupted) or to add trials (a larger --trials). Writes OUT/trials.csv,
OUT/best_config.json (kmat train --config accepts it), OUT/final/seed<S>/ (the best configuration
on both test splits), OUT/table2.md and OUT/results.csv (the final runs; `kmat table OUT`
rebuilds them), OUT/tune.png and OUT/tune.json.
"""


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "tune",
        parents=parents,
        help=HEAVY_HELP,
        description="Search hyper-parameters of a method with Optuna (TPE by default) on a "
        "validation split, then train and evaluate the best configuration on every seed.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("search")
    g.add_argument(
        "--space",
        nargs="+",
        required=True,
        metavar="NAME=RANGE",
        help="searched options: NAME=LOW:HIGH[:log][:int] or NAME=V1,V2,...",
    )
    g.add_argument("--trials", type=int, default=20, help="trials to finish in all (default: 20)")
    g.add_argument(
        "--seeds", nargs="+", type=int, default=[1], help="seeds of every trial and final run (default: 1)"
    )
    g.add_argument(
        "--select-on",
        choices=["high-val", "low-val"],
        default="high-val",
        help="the objective: high-end validation accuracy (default; the paper's protocol) or the "
        "low-end one (not zero-shot)",
    )
    g.add_argument(
        "--sampler", choices=["tpe", "random"], default="tpe", help="Optuna sampler (default: tpe)"
    )
    g.add_argument("--sampler-seed", type=int, default=0, help="seed of the sampler (default: 0)")
    g.add_argument("--out", required=True, help="output folder (the study, trials, best config, final runs)")
    g.add_argument(
        "--no-final", dest="final", action="store_false", help="stop after the search (no final runs)"
    )
    add_executor_flags(
        p,
        workers_help="with --executor ray: at most N trials at a time, each running its seeds' runs "
        "together (default: as many as the resources allow)",
    )
    add_run_flags(p, exclude=("out", "seed"))
    add_method_flags(p)
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace):  # noqa: ANN201 - kmat.tools.tune.TuneSettings
    from kmat.methods.config import options_of
    from kmat.run.config import RunConfig
    from kmat.tools.tune import TuneSettings, parse_space

    if not getattr(args, "task", None):
        raise ConfigError("kmat tune needs --task")
    method = getattr(args, "method", None) or "kmat"
    skip = {"task", "method", "out", "seed", "options", "show_progress"}
    run = {k: getattr(args, k) for k in options_of(RunConfig) if k not in skip and hasattr(args, k)}
    task = Path(args.task).expanduser()
    return TuneSettings(  # a task folder recorded absolute: best_config.json must not depend on the cwd
        task=str(task.resolve()) if task.is_dir() else args.task,
        out=args.out,
        space=parse_space(args.space, method),
        method=method,
        trials=args.trials,
        seeds=tuple(args.seeds),
        select_on=args.select_on,
        sampler=args.sampler,
        sampler_seed=args.sampler_seed,
        run=run,
        options=method_options_from_args(args),
        final=args.final,
        show_progress=False,
    )


def run(args: argparse.Namespace) -> int:
    if args.help_options:
        from kmat.cli.options import format_method_options

        print(format_method_options(getattr(args, "method", None) or "kmat"))
        return 0
    from kmat.tools.tune import tune

    settings = settings_from_args(args)
    executor = executor_from_args(args)
    summary = tune(settings, executor=executor)
    print_summary(summary)
    return 0


def print_summary(summary: dict) -> None:
    t = summary["trials"]
    low = summary["select_on"] == "low-val"
    print(
        f"kmat tune: {summary['method']} on {summary['task']}: {t['complete']} trial(s) complete, "
        f"{t['failed']} failed" + (f", {t['interrupted']} interrupted" if t["interrupted"] else "")
    )
    print(f"protocol: {summary['protocol']}" + (" (the paper's)" if not low else ""))
    if low:
        print(
            "  the low-end validation split chose this configuration: its Lo and H numbers are "
            "not zero-shot results"
        )
    best = summary["best"]
    print(f"objective: {summary['objective']}")
    print(f"best trial #{best['number']}: {best['objective']:.2f}")
    for k, v in best["params"].items():
        print(f"  {k} = {v:.4g}" if isinstance(v, float) else f"  {k} = {v}")
    final = summary.get("final")
    if final:
        seeds = " ".join(final["metrics"])
        mark = " [low-val: not strict zero-shot]" if low else ""
        print_metrics(
            final["mean"], f"best configuration on the test splits, mean over seed(s) {seeds}{mark}:"
        )
        for s, m in final["metrics"].items():
            print(f"  seed {s}: Hi {m['high']['acc']:.2f}  Lo {m['low']['acc']:.2f}  H {m['h']['acc']:.2f}")
    files = summary["files"]
    if files.get("table"):
        print()
        print(Path(files["table"]).read_text().rstrip())
        print()
    print(f"wrote {files['trials']}, {files['best_config']}, {files['figure']}")
    if final:
        print(f"final runs: {', '.join(final['runs'].values())}")
