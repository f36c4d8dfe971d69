"""``kmat prepare``: turn a raw dataset download into task manifests."""

from __future__ import annotations

import argparse
import json
import os

from kmat.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "prepare",
        parents=parents,
        help="turn a raw dataset download into ready-to-train task manifests",
        description="Read a raw download (derm7pt, midas, dmid, busi, cc_ccii, chestxray, or a generic "
        "imagefolder), write OUT/<task>/<dataset>__<modality>.csv and OUT/<task>/task.json, "
        "and print per-split, per-class counts beside the paper's. Missing or ambiguous "
        "files are listed and stop the preparer unless --skip-missing.",
        epilog="examples:\n  kmat prepare derm7pt --raw ~/data/release_v0 --out ~/kmat-data\n"
        "  kmat prepare busi --raw ~/data/Dataset_BUSI_with_GT --out ~/kmat-data "
        "--split-file split_BUSI.json\n"
        "  kmat prepare imagefolder --raw ./my_xrays --out ~/kmat-data --task chest "
        "--modality xray --class-alias COVID=covid19\n"
        "  # a new task of your own: the high end (trained on), then the low end (only evaluated)\n"
        "  kmat prepare imagefolder --raw raw/sharp --out data --task digits --modality sharp "
        "--role high --classes zero one two\n"
        "  kmat prepare imagefolder --raw raw/blurry --out data --task digits --modality blurry --role low\n"
        "  kmat prepare --list",
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
    p.add_argument(
        "--role",
        default=None,
        choices=["high", "low", "high_end", "low_end"],
        metavar="{high,low}",
        help="imagefolder: high = the modality trained on, low = the one only evaluated (needed for a "
        "new modality of a task; high_end / low_end are accepted too)",
    )
    p.add_argument(
        "--classes", nargs="+", default=None, metavar="CLASS", help="imagefolder: class keys of a new task"
    )
    p.add_argument(
        "--class-alias",
        nargs="+",
        default=None,
        metavar="FOLDER=CLASS",
        help="imagefolder: a folder name that is not a class key",
    )
    p.add_argument(
        "--low-val-fraction",
        type=float,
        default=None,
        metavar="F",
        help="imagefolder, low-end modality: share of its images in a validation split (default 0: all "
        "test, as the low end is never trained on; e.g. 0.1 for kmat tune --select-on low)",
    )
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
    p.set_defaults(func=run)


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def run(args: argparse.Namespace) -> int:
    from kmat.tools.preparers import dataset_names, prepare_dataset, preparer_options

    if args.list or not args.dataset:
        print("datasets and their options (pass with the flags below or --set KEY=VALUE):")
        for d in dataset_names():
            opts = ", ".join(f"{k}={v!r}" for k, v in preparer_options(d).items())
            print(f"  {d}: {opts}")
        return 0 if args.list else 2
    if not args.raw:
        raise ConfigError("kmat prepare needs --raw DIR (the downloaded dataset)")
    out = args.out or os.environ.get("KMAT_DATA")
    if not out:
        raise ConfigError("kmat prepare needs --out DIR (the data root) or $KMAT_DATA")
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
        "low_val_fraction": args.low_val_fraction,
        "fold_sccis_into_scc": True if args.fold_sccis_into_scc else None,
        "class_aliases": dict(a.split("=", 1) for a in args.class_alias) if args.class_alias else None,
    }
    options.update({k: v for k, v in flags.items() if v is not None})
    for item in args.set or []:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        options[key.strip().replace("-", "_")] = _parse_value(value)
    accepted = preparer_options(args.dataset)
    unknown = sorted(k for k in options if k not in accepted)
    if unknown:
        raise ConfigError(
            f"dataset {args.dataset!r} does not take option(s) {unknown}; it takes {sorted(accepted)}"
        )
    from kmat.errors import PrepareError

    try:
        report = prepare_dataset(args.dataset, args.raw, out, **options)
    except PrepareError as err:
        if not err.options:
            raise
        raise ConfigError(f"{err} [{' '.join(_flag(k, v) for k, v in err.options.items())}]") from err
    print(report.format())
    return 0


FLAGS = {  # preparer option -> its flag and the placeholder of its value ("" for a switch)
    "classes": ("--classes", "CLASS [CLASS ...]"),
    "role": ("--role", "high|low"),
    "modality": ("--modality", "NAME"),
    "task": ("--task", "NAME"),
    "class_aliases": ("--class-alias", "FOLDER=CLASS"),
    "exclude": ("--exclude", "GLOB"),
    "skip_missing": ("--skip-missing", ""),
    "overwrite": ("--overwrite", ""),
    "low_val_fraction": ("--low-val-fraction", "F"),
    "metadata": ("--metadata", "FILE"),
    "split_file": ("--split-file", "FILE"),
}


def _flag(option: str, value: str | None) -> str:
    """The flag that sets a preparer option, with a suggested value (or a placeholder)."""
    flag, placeholder = FLAGS.get(option, ("--set", f"{option}=VALUE"))
    if flag == "--set":
        return f"--set {option}={value}" if value is not None else f"{flag} {placeholder}"
    return " ".join(x for x in (flag, value if value is not None else placeholder) if x)
