"""The ``kmat`` command. The only module that parses arguments."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from kmat import PRECISIONS, __version__

EPILOG_TRAIN = """examples:
  kmat train --task ./my_task --backbone local-dir:./tiny --epochs 2 --out runs/kmat-s1
  kmat train --task breast --data-root $KMAT_DATA --method kmat --shots 16 --seed 1 --out runs/breast/kmat/seed1

--task is a task folder (task.json + one manifest CSV per modality + descriptions.json) or the name
of a task prepared under --data-root / $KMAT_DATA. The run writes OUT/result.json (metrics in %),
OUT/checkpoint.safetensors (learned prompts + resolved config) and the few-shot subset manifests.
"""


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="task folder, or task name under --data-root")
    p.add_argument("--method", default="kmat", help="method name (default: kmat)")
    p.add_argument("--data-root", default=None, help="root of prepared tasks (default: $KMAT_DATA)")
    p.add_argument(
        "--backbone", default="biomedclip", help="biomedclip (default), hf-hub:ORG/NAME or local-dir:PATH"
    )
    p.add_argument("--shots", type=int, default=16, help="high-end images per class (0 = all; default 16)")
    p.add_argument(
        "--seed", type=int, default=1, help="seed of the few-shot subset, init and order (default 1)"
    )
    p.add_argument("--out", required=True, help="output folder of the run")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32 (default, for fidelity) or bf16 autocast of the frozen towers (GPUs, and CPUs "
        "with bfloat16 instructions, e.g. AVX512-BF16 or AMX)",
    )
    p.add_argument(
        "--no-feature-cache",
        action="store_true",
        help="do not read or write the on-disk image-feature cache ($KMAT_CACHE/features)",
    )
    g = p.add_argument_group("training recipe (default: the method's published settings)")
    g.add_argument("--epochs", type=int, default=None)
    g.add_argument("--batch-size", type=int, default=None)
    g.add_argument("--lr", type=float, default=None)
    g.add_argument(
        "--no-augment", action="store_true", help="train on centre crops instead of random resized crops"
    )
    k = p.add_argument_group("K-MaT options")
    k.add_argument(
        "--lambda-anchor", type=float, default=None, help="weight of L_anchor (0 turns it off; default 1)"
    )
    k.add_argument(
        "--lambda-fgw", type=float, default=None, help="weight of L_FGW (0 turns it off; default 1)"
    )
    k.add_argument(
        "--csc",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="class-specific context (default on)",
    )
    k.add_argument(
        "--msc",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="modality-specific context (default on)",
    )
    k.add_argument("--alpha", type=float, default=None, help="FGW structure weight (default 0.1)")
    k.add_argument("--epsilon", type=float, default=None, help="FGW entropic regularisation (default 0.1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _options(args: argparse.Namespace) -> dict:
    keys = ["epochs", "batch_size", "lr", "lambda_anchor", "lambda_fgw", "csc", "msc", "alpha", "epsilon"]
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def _print_metrics(metrics: dict, title: str) -> None:
    print(title)
    print(f"  {'':6s} {'acc':>7s} {'macro-F1':>9s}")
    for role, label in (("high", "Hi"), ("low", "Lo"), ("h", "H")):
        m = metrics[role]
        print(f"  {label:6s} {m['acc']:7.2f} {m['macro_f1']:9.2f}")


def cmd_train(args: argparse.Namespace) -> int:
    from kmat.run.config import RunConfig
    from kmat.run.runner import RESULT_FILE, run

    cfg = RunConfig(
        task=args.task,
        out=args.out,
        method=args.method,
        data_root=args.data_root,
        backbone=args.backbone,
        shots=args.shots,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
        feature_cache=not args.no_feature_cache,
        augment=not args.no_augment,
        show_progress=not args.quiet,
        options=_options(args),
    )
    result = run(cfg)
    _print_metrics(
        result["metrics"],
        f"{result['method']} on {result['task']} ({result['shots']} shots, seed {result['seed']}):",
    )
    print(f"wrote {Path(args.out) / RESULT_FILE}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from kmat.run.runner import CHECKPOINT_FILE, evaluate_checkpoint

    ckpt = Path(args.run)
    ckpt = ckpt / CHECKPOINT_FILE if ckpt.is_dir() else ckpt
    metrics = evaluate_checkpoint(ckpt, task=args.task, data_root=args.data_root)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        _print_metrics(metrics, f"re-evaluated {ckpt}:")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from kmat.run.experiments import PAPER_TASKS, TABLE2_METHODS, table2_grid, table3_grid
    from kmat.run.grid import resolve_tasks, run_grid

    out = Path(args.out)
    tasks = resolve_tasks(args.tasks or PAPER_TASKS, args.data_root)
    options = {"epochs": args.epochs} if args.epochs is not None else {}
    if args.table == 2:
        methods = args.methods or [m for m, _ in TABLE2_METHODS]
        specs = table2_grid(tasks, methods, args.seeds, args.shots, options)
    else:
        specs = table3_grid(tasks, args.seeds, args.shots, options)
    print(
        f"kmat reproduce --table {args.table}: {len(specs)} run(s) "
        f"({len(tasks)} task(s) x {len(specs) // max(1, len(tasks) * len(args.seeds))} configuration(s) "
        f"x {len(args.seeds)} seed(s)), backbone {args.backbone}, output {out}"
    )
    report = run_grid(
        specs,
        out,
        args.backbone,
        data_root=args.data_root,
        device=args.device,
        dry_run=args.dry_run,
        show_progress=not args.quiet,
        precision=args.precision,
        feature_cache=not args.no_feature_cache,
    )
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


def cmd_table(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    if not (out / "runs").is_dir():
        raise FileNotFoundError(f"{out}: no runs/ folder (is this a kmat reproduce output folder?)")
    from kmat.report.results import write_report

    write_report(out, tuple(args.table or (2, 3)), args.std, args.compare_paper, figures=not args.no_figures)
    return 0


def _task_spec(task: str) -> tuple[dict, Path | None]:
    """task.json of a task folder, or the shipped definition of a paper task name."""
    folder = Path(task).expanduser()
    if (folder / "task.json").is_file():
        return json.loads((folder / "task.json").read_text()), folder
    from kmat.data.definitions import load_definition

    return load_definition(task), None


def cmd_describe(args: argparse.Namespace) -> int:
    from kmat.knowledge.descriptions import shipped_path

    if args.show:
        spec, folder = _task_spec(args.show)
        path = (
            (folder / "descriptions.json")
            if folder and (folder / "descriptions.json").is_file()
            else shipped_path(spec.get("task", args.show))
        )
        if path is None:
            raise FileNotFoundError(f"no descriptions for task {args.show!r}")
        data = json.loads(path.read_text())
        print(f"descriptions of {spec.get('task', args.show)} ({path}):")
        for mod, block in data.items():
            for cls, items in block.items():
                print(f"\n[{mod} / {cls}] {len(items)} descriptions")
                for s in items[: args.limit] if args.limit else items:
                    print(f"  - {s}")
        return 0
    if not args.task or not args.model or not args.out:
        raise ValueError("kmat describe needs --task, --model and --out (or --show TASK)")
    from kmat.tools.describe import GeneratorError, generate_descriptions

    spec, _ = _task_spec(args.task)
    names = spec.get("classnames", {})
    classes = [(c, names.get(c, c.replace("_", " "))) for c in spec["classes"]]
    mods = [
        (spec[r]["modality"], spec[r].get("display_name", spec[r]["modality"].replace("_", " ")))
        for r in ("high_end", "low_end")
    ]
    try:
        data = generate_descriptions(
            classes,
            mods,
            Path(args.out),
            model=args.model,
            base_url=args.base_url,
            n=args.n,
            task_hint=spec.get("title", ""),
            progress=not args.quiet,
            max_retries=args.max_retries,
        )
    except GeneratorError as err:
        raise ValueError(
            f"{err} (partial output, if any, is kept in {args.out}; run again to resume)"
        ) from err
    counts = ", ".join(f"{m}/{c}: {len(v)}" for m, b in data.items() for c, v in b.items())
    print(f"wrote {args.out} ({counts})")
    return 0


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def cmd_prepare(args: argparse.Namespace) -> int:
    from kmat.tools.preparers import dataset_names, prepare_dataset, preparer_options

    if args.list or not args.dataset:
        print("datasets and their options (pass with the flags below or --set KEY=VALUE):")
        for d in dataset_names():
            opts = ", ".join(f"{k}={v!r}" for k, v in preparer_options(d).items())
            print(f"  {d}: {opts}")
        return 0 if args.list else 2
    if not args.raw:
        raise ValueError("kmat prepare needs --raw DIR (the downloaded dataset)")
    out = args.out or os.environ.get("KMAT_DATA")
    if not out:
        raise ValueError("kmat prepare needs --out DIR (the data root) or $KMAT_DATA")
    options: dict = {"skip_missing": args.skip_missing, "seed": args.seed, "overwrite": args.overwrite}
    flags = {
        "metadata": args.metadata,
        "split_file": args.split_file,
        "slice_policy": args.slice_policy,
        "k": args.k,
        "image_format": args.image_format,
        "task": args.task,
        "modality": args.modality,
        "role": args.role,
        "classes": args.classes,
        "exclude": args.exclude,
        "fold_sccis_into_scc": True if args.fold_sccis_into_scc else None,
        "class_aliases": dict(a.split("=", 1) for a in args.class_alias) if args.class_alias else None,
    }
    options.update({k: v for k, v in flags.items() if v is not None})
    for item in args.set or []:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        options[key.strip().replace("-", "_")] = _parse_value(value)
    accepted = preparer_options(args.dataset)
    unknown = sorted(k for k in options if k not in accepted)
    if unknown:
        raise ValueError(
            f"dataset {args.dataset!r} does not take option(s) {unknown}; it takes {sorted(accepted)}"
        )
    report = prepare_dataset(args.dataset, args.raw, out, **options)
    print(report.format())
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from kmat.tools.preparers import format_task_list, list_tasks

    print(format_task_list(list_tasks(args.data_root)))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:

    from kmat.run.predict import collect_images, load_run, predict_images

    loaded = load_run(args.run)  # a clear error about the run before looking for images
    images = collect_images(args.images)
    preds = predict_images(args.run, images, role=args.modality, device=args.device, loaded=loaded)
    classes = list(preds[0].probabilities)
    if args.out:
        from kmat.utils.io import atomic_write_bytes, csv_bytes

        atomic_write_bytes(
            args.out,
            csv_bytes(
                ["path", "prediction", *[f"p_{c}" for c in classes]],
                ([p.path, p.label, *[p.probabilities[c] for c in classes]] for p in preds),
            ),
        )
        print(f"wrote {len(preds)} predictions to {args.out}")
    else:
        for p in preds:
            top = max(p.probabilities.values())
            print(f"{p.label:24s} {top:6.3f}  {p.path}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from kmat.tools.bench import run_bench

    result = run_bench(
        arch=args.arch,
        device=args.device,
        repeats=args.repeats,
        precision=args.precision,
        memory=not args.no_memory,
    )
    if args.json:
        from kmat.utils.io import atomic_write_json

        atomic_write_json(args.json, result)
    return 0


def cmd_backbone(args: argparse.Namespace) -> int:
    from kmat.tools.tinymodel import write_tiny_biomedclip

    folder = write_tiny_biomedclip(args.out, size=args.size, seed=args.seed)
    print(f"wrote a random-weight {args.size} BiomedCLIP-shaped model to {folder}")
    print(f"use it with: --backbone local-dir:{folder}")
    return 0


def cmd_toy_task(args: argparse.Namespace) -> int:
    from kmat.tools.toy import write_toy_task

    folder = write_toy_task(args.out, n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    print(f"wrote the toy task to {folder}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from kmat.tools.demo import run_demo

    splits = dict(zip(("train", "val", "test"), args.synth_sizes, strict=True)) if args.synth_sizes else None
    params = {"n_per_class": args.pretrain_images, "epochs": args.pretrain_epochs}
    params = {k: v for k, v in params.items() if v is not None}
    run_demo(
        args.out,
        quick=args.quick,
        backbone=args.backbone,
        epochs=args.epochs,
        splits=splits,
        backbone_params=params or None,
        device=args.device,
        show_progress=not args.quiet,
    )
    return 0


def cmd_demo_backbone(args: argparse.Namespace) -> int:
    from kmat.tools.demo_backbone import DEFAULTS, build_demo_backbone

    params = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k, None) is not None}
    folder = build_demo_backbone(args.out, show_progress=not args.quiet, **params)
    print(f"wrote the demo backbone to {folder}; use it with --backbone local-dir:{folder}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kmat",
        description="Cross-modal prompt learning on frozen medical vision-language models (K-MaT and baselines).",
    )
    parser.add_argument("--version", action="version", version=f"kmat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train one method on one task and evaluate it on both modalities",
        description="Train a method on the high-end few-shot images of a task and evaluate it "
        "zero-shot on the low-end test split.",
        epilog=EPILOG_TRAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_train_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate",
        help="re-evaluate a trained run from its checkpoint",
        description="Rebuild the learned prompts from OUT/checkpoint.safetensors and evaluate them.",
    )
    p.add_argument("--run", required=True, help="run folder (or checkpoint file) written by kmat train")
    p.add_argument("--task", default=None, help="override the task folder/name saved in the checkpoint")
    p.add_argument("--data-root", default=None)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "reproduce",
        help="run the paper's Table 2 or Table 3 grid and write the tables",
        description="Run every method x task x seed (Table 2) or the eight K-MaT ablation "
        "rows (Table 3). Finished runs are skipped, so an interrupted grid resumes; "
        "a failed run is recorded in its error.json and the grid goes on. Writes "
        "OUT/runs/<task>/<method>/seed<S>/result.json, OUT/table2.md or table3.md, "
        "OUT/results.csv and OUT/figures/.",
    )
    p.add_argument("--table", type=int, choices=[2, 3], required=True)
    p.add_argument(
        "--tasks",
        nargs="+",
        default=None,
        help="task names (under --data-root) or task folders (default: skin1 skin2 chest breast)",
    )
    p.add_argument("--methods", nargs="+", default=None, help="Table 2 methods (default: all six)")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--shots", type=int, default=16)
    p.add_argument("--backbone", default="biomedclip")
    p.add_argument("--data-root", default=None)
    p.add_argument("--epochs", type=int, default=None, help="override every method's epochs (smoke runs)")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32 (default) or bf16 autocast of the frozen towers (GPUs, CPUs with bfloat16 instructions)",
    )
    p.add_argument(
        "--no-feature-cache", action="store_true", help="do not use the on-disk image-feature cache"
    )
    p.add_argument("--out", default="kmat-results")
    p.add_argument("--dry-run", action="store_true", help="list the runs and whether they are done")
    p.add_argument("--std", action="store_true", help="add ± std over seeds to the table cells")
    p.add_argument("--compare-paper", action="store_true", help="print the paper's published numbers too")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser(
        "table",
        help="rebuild the tables, results.csv and figures from the runs in DIR",
        description="Rebuild OUT/table2.md, table3.md, results.csv and figures from whatever "
        "result.json files exist under DIR/runs.",
    )
    p.add_argument("dir")
    p.add_argument("--table", type=int, choices=[2, 3], nargs="+", default=None)
    p.add_argument("--std", action="store_true")
    p.add_argument("--compare-paper", action="store_true")
    p.add_argument("--no-figures", action="store_true")
    p.set_defaults(func=cmd_table)

    p = sub.add_parser(
        "prepare",
        help="turn a raw dataset download into ready-to-train task manifests",
        description="Read a raw download (derm7pt, midas, dmid, busi, cc_ccii, chestxray, or a generic "
        "imagefolder), write OUT/<task>/<dataset>__<modality>.csv and OUT/<task>/task.json, "
        "and print per-split, per-class counts beside the paper's. Missing or ambiguous "
        "files are listed and stop the preparer unless --skip-missing.",
        epilog="examples:\n  kmat prepare derm7pt --raw ~/data/release_v0 --out ~/kmat-data\n"
        "  kmat prepare busi --raw ~/data/Dataset_BUSI_with_GT --out ~/kmat-data "
        "--split-file split_BUSI.json\n"
        "  kmat prepare imagefolder --raw ./my_xrays --out ~/kmat-data --task chest "
        "--modality xray --class-alias COVID=covid19\n  kmat prepare --list",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dataset", nargs="?", help="derm7pt, midas, dmid, busi, cc_ccii, chestxray or imagefolder")
    p.add_argument("--raw", help="the downloaded dataset folder")
    p.add_argument("--out", help="data root to write tasks into (default: $KMAT_DATA)")
    p.add_argument("--list", action="store_true", help="list the datasets and their options")
    p.add_argument(
        "--skip-missing", action="store_true", help="skip missing/ambiguous files (written to a report)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of generated splits (default 0)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing manifest whose content changed"
    )
    p.add_argument(
        "--metadata", default=None, help="metadata file (midas xlsx, dmid Metadata.xlsx) if not found"
    )
    p.add_argument("--split-file", default=None, help="busi: BiomedCoOp split_BUSI.json to import")
    p.add_argument(
        "--slice-policy", default=None, choices=["lesion_slices", "middle_k", "all"], help="cc_ccii"
    )
    p.add_argument("--k", type=int, default=None, help="cc_ccii: slices per scan for middle_k")
    p.add_argument("--image-format", default=None, choices=["tiff", "dicom"], help="dmid")
    p.add_argument("--fold-sccis-into-scc", action="store_true", help="midas: count SCC in situ as SCC")
    p.add_argument("--task", default=None, help="imagefolder: the task to write into")
    p.add_argument("--modality", default=None, help="imagefolder: the modality key")
    p.add_argument("--role", default=None, choices=["high_end", "low_end"], help="imagefolder")
    p.add_argument("--classes", nargs="+", default=None, help="imagefolder: class keys")
    p.add_argument("--class-alias", nargs="+", default=None, metavar="FOLDER=CLASS", help="imagefolder")
    p.add_argument(
        "--exclude", nargs="+", default=None, metavar="GLOB", help="file globs to skip (e.g. '*_mask*')"
    )
    p.add_argument(
        "--set",
        nargs="+",
        default=None,
        metavar="KEY=VALUE",
        help="any other preparer option; VALUE is read as JSON when it parses",
    )
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser(
        "tasks",
        help="show each task, where its data is expected, and whether it is prepared",
        description="List the paper's tasks (and any other task folder) under the data root.",
    )
    p.add_argument("--data-root", default=None, help="default: $KMAT_DATA")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser(
        "describe",
        help="write clinical descriptions with an LLM, or show the shipped ones",
        description="Ask an OpenAI-compatible chat-completions endpoint for N visual descriptions "
        "per class and modality of a task (API key from $KMAT_LLM_API_KEY or "
        "$OPENAI_API_KEY). The output file is rewritten atomically after every batch, "
        "so an interrupted run resumes. --show TASK prints the shipped descriptions.",
        epilog="examples:\n  kmat describe --show breast\n"
        "  kmat describe --task breast --model gpt-4o --n 50 --out breast_descriptions.json\n"
        "  kmat describe --task ./my_task --model llama3 --base-url http://localhost:11434/v1 "
        "--out ./my_task/descriptions.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--show", metavar="TASK", default=None, help="print the descriptions of TASK and their counts"
    )
    p.add_argument("--limit", type=int, default=0, help="with --show: at most this many per list (0 = all)")
    p.add_argument(
        "--task", default=None, help="paper task name (skin1, skin2, breast, chest) or task folder"
    )
    p.add_argument("--model", default=None, help="model name at the endpoint")
    p.add_argument("--base-url", default="https://api.openai.com/v1", help="OpenAI-compatible API base URL")
    p.add_argument("--n", type=int, default=50, help="descriptions per class and modality (default 50)")
    p.add_argument("--out", default=None, help="output JSON file (resumed if it exists)")
    p.add_argument(
        "--max-retries", type=int, default=5, help="retries per request, with back-off (default 5)"
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser(
        "predict",
        help="classify new images with the prompts a run learned",
        description="Classify images with a finished run's learned class embeddings (low-end "
        "prompts by default: deploy K-MaT trained on high-end images to low-end ones).",
        epilog="example:\n  kmat predict --run runs/breast/kmat/seed1 --images ./ultrasound_pngs "
        "--out predictions.csv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--run", required=True, help="run folder written by kmat train / reproduce")
    p.add_argument(
        "--images", nargs="+", required=True, help="image files and/or folders (searched recursively)"
    )
    p.add_argument(
        "--modality", choices=["low", "high"], default="low", help="which prompts to use (default low)"
    )
    p.add_argument("--out", default=None, help="write a CSV (path, prediction, one probability per class)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "bench",
        help="measure kmat's training step and run against a reference-style implementation",
        description="Speed and memory benchmark on a random-weight model with BiomedCLIP's layout "
        "(see kmat.tools.bench). Ends with 'speedup step=<x> run=<y> floor=<z>'.",
    )
    p.add_argument(
        "--arch",
        choices=["reduced", "full", "tiny"],
        default="reduced",
        help="reduced (default: ViT-S/16 + 6-layer BERT, a few minutes on a CPU), full (BiomedCLIP's) "
        "or tiny (seconds: a smoke test of the benchmark itself, its figures mean nothing)",
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="precision of both the kmat and the reference-style passes (default fp32)",
    )
    p.add_argument("--repeats", type=int, default=2, help="timed repetitions of each step (default 2)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory child process")
    p.add_argument("--json", default=None, help="also write every figure to this JSON file")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "backbone",
        help="write a random-weight BiomedCLIP-shaped model folder (tests, benchmarks)",
        description="Write an open_clip model folder with BiomedCLIP's layout and random weights, "
        "loadable with --backbone local-dir:OUT.",
    )
    p.add_argument("--out", required=True)
    p.add_argument(
        "--size",
        choices=["tiny", "reduced", "full"],
        default="tiny",
        help="tiny (tests), reduced, or full (= BiomedCLIP's architecture)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_backbone)

    p = sub.add_parser(
        "toy-task",
        help="write the tiny procedural toy task folder",
        description="Write a small 3-class cross-modal task (hiscan -> loscan) in the manifest format.",
    )
    p.add_argument("--out", required=True)
    p.add_argument("--n-train", type=int, default=8, help="train images per class and modality")
    p.add_argument("--n-test", type=int, default=4, help="test images per class and modality")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_toy_task)

    p = sub.add_parser(
        "demo",
        help="the whole paper on built-in synthetic data and a small backbone (offline, CPU)",
        description="Generate (or reuse) the SynthMed benchmark and the demo backbone, run Table 2 "
        "(six methods, three seeds) and Table 3 (the eight ablation rows, one seed) "
        "through the same driver as kmat reproduce, and print the tables. About five "
        "minutes on a 2-core CPU the first time, less afterwards; --quick runs Table 2 "
        "with one seed only.",
    )
    p.add_argument("--out", default="kmat-demo", help="output folder (default: ./kmat-demo)")
    p.add_argument("--quick", action="store_true", help="Table 2 with seed 1 only; no Table 3")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    adv = p.add_argument_group("advanced (smaller or different runs)")
    adv.add_argument("--backbone", default=None, help="use this backbone instead of the demo backbone")
    adv.add_argument("--epochs", type=int, default=None, help="override every method's epochs")
    adv.add_argument(
        "--synth-sizes",
        type=int,
        nargs=3,
        metavar=("TRAIN", "VAL", "TEST"),
        default=None,
        help="SynthMed images per class and split (default 100 20 40)",
    )
    adv.add_argument(
        "--pretrain-images", type=int, default=None, help="demo backbone: images per class/modality"
    )
    adv.add_argument("--pretrain-epochs", type=int, default=None, help="demo backbone: pre-training epochs")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "demo-backbone",
        help="pre-train the demo backbone on SynthMed captions into a folder",
        description="Build the small BiomedCLIP-family demo backbone (seeded; see "
        "kmat.tools.demo_backbone for the recipe) and save it in open_clip local-dir format.",
    )
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=None, help="default 0")
    p.add_argument("--n-per-class", dest="n_per_class", type=int, default=None, help="default 300")
    p.add_argument("--epochs", type=int, default=None, help="default 40")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=None, help="default 64")
    p.add_argument("--lr", type=float, default=None, help="default 2e-3")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo_backbone)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    import warnings

    from kmat.errors import USER_ERRORS

    seen: set[str] = set()

    def _show(message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message)
        if text not in seen:  # each distinct warning once per command
            seen.add(text)
            print(f"kmat: warning: {text}", file=sys.stderr)

    warnings.showwarning = _show

    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        if os.environ.get("KMAT_DEBUG"):
            raise
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"kmat: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kmat: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
