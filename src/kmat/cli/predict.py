"""``kmat predict``: classify new images with the prompts a run learned."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "predict",
        parents=parents,
        help="classify new images with the prompts a run learned",
        description="Classify images with a finished run (low-end prompts by default: deploy K-MaT "
        "trained on high-end images to low-end ones). Works for every method, from the run folder "
        "alone. Given labelled images (a class-folder FOLDER/<class>/..., or --labels CSV), it also "
        "scores the predictions: accuracy, macro-F1 and the confusion matrix.",
        epilog="examples:\n  kmat predict --run runs/breast/kmat/seed1 --images ./ultrasound_pngs "
        "--out predictions.csv\n"
        "  kmat predict --run runs/breast/kmat/seed1 --images ./labelled_us   # ./labelled_us/<class>/*.png\n"
        "  kmat predict --run runs/breast/kmat/seed1 --images ./us --labels us_labels.csv  # path,label\n\n"
        "With --out FILE.csv the scores go to FILE.metrics.json beside it (and a 'label' column to the CSV).\n"
        "Images that cannot be used (corrupt, truncated, empty, not an image, NaN or infinite\n"
        "pixels) are skipped, one warning line each, and the others are predicted; the exit status\n"
        "is 1 when no image could be predicted (nothing is written), 2 with --strict and any such\n"
        "image, or when --out cannot be written (a file or folder in the way, a full or read-only disk).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--run", required=True, help="run folder written by kmat train / reproduce")
    p.add_argument(
        "--images", nargs="+", required=True, help="image files and/or folders (searched recursively)"
    )
    p.add_argument(
        "--modality", choices=["low", "high"], default="low", help="which prompts to use (default low)"
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="write a CSV (path, prediction, one probability per class) to this file; an existing "
        "folder is refused (give a file name, e.g. DIR/predictions.csv)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="stop (exit status 2, nothing written) if any image cannot be used, naming them all; "
        "without it such images are skipped with a warning each",
    )
    p.add_argument(
        "--labels",
        default=None,
        metavar="CSV",
        help="true labels to score against: a CSV with the columns path,label (paths relative to the "
        "CSV's folder). Without it, images in class-named folders under a given folder are labelled by "
        "that folder",
    )
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--backbone",
        default=None,
        help="load the backbone from here instead of the spec the run recorded (a moved model folder); "
        "its weights must be the run's",
    )
    p.add_argument(
        "--allow-backbone-mismatch",
        action="store_true",
        help="go on (with a warning) when the backbone's weights differ from those the run was trained with",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kmat.run.labels import csv_labels, folder_labels, labels_of
    from kmat.run.predict import collect_images, load_run, predict_report
    from kmat.utils.io import atomic_write_bytes, check_output_file, csv_bytes, probe_writable

    if args.out:  # a misplaced or unwritable --out fails now, not after predicting
        out = check_output_file(args.out)
        if out.parent.is_dir():
            probe_writable(out.parent)
    loaded = load_run(args.run)  # a clear error about the run before looking for images
    images = collect_images(args.images)
    config = loaded[0]["config"]
    classes, classnames = list(config["classes"]), list(config.get("classnames") or config["classes"])
    truth: dict[Path, int] | None
    if args.labels:
        truth, resolved = csv_labels(args.labels, classes, classnames), True
    else:
        truth, resolved = folder_labels(args.images, images, classes, classnames), False
    if args.out and truth is not None:  # the scores' file too fails now, not after the CSV is written
        check_output_file(metrics_path(args.out))
    report = predict_report(
        args.run,
        images,
        role=args.modality,
        device=args.device,
        loaded=loaded,
        backbone_spec=args.backbone,
        allow_backbone_mismatch=args.allow_backbone_mismatch,
        strict=args.strict,
    )
    for bad in report.bad:
        print(f"kmat: warning: {bad.path}: skipped: {bad.reason}", file=sys.stderr)
    preds = report.predictions
    if not preds:
        print(
            f"kmat: error: none of the {len(images)} image(s) could be used (each is named above); "
            "nothing was written",
            file=sys.stderr,
        )
        return 1
    skipped = f"; {len(report.bad)} image(s) skipped (named above)" if report.bad else ""
    true_of: dict[int, int] = {}
    if truth is not None:
        pos, ys = labels_of([p.path for p in preds], truth, by_resolved_path=resolved)
        true_of = dict(zip(pos, ys, strict=True))
    if args.out:
        labelled = ["label"] if truth is not None else []
        atomic_write_bytes(
            args.out,
            csv_bytes(
                ["path", "prediction", *labelled, *[f"p_{c}" for c in classes]],
                (
                    [
                        p.path,
                        p.label,
                        *([classes[true_of[i]] if i in true_of else ""] if labelled else []),
                        *[p.probabilities[c] for c in classes],
                    ]
                    for i, p in enumerate(preds)
                ),
            ),
        )
        print(f"wrote {len(preds)} predictions to {args.out}{skipped}")
    else:
        for p in preds:
            top = max(p.probabilities.values())
            print(f"{p.label:24s} {top:6.3f}  {p.path}")
        if skipped:
            print(skipped.removeprefix("; "))
    if truth is not None:
        return _report_scores(args, preds, true_of, classes)
    return 0


def metrics_path(out: str | Path) -> Path:
    """Where the scores of ``--out FILE.csv`` go: ``FILE.metrics.json`` (``--out NAME`` without a
    .csv suffix: ``NAME.metrics.json``)."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix.lower() == ".csv" else out
    return stem.with_name(stem.name + ".metrics.json")


def _report_scores(args: argparse.Namespace, preds: list, true_of: dict[int, int], classes: list[str]) -> int:
    """Print (and with --out, write beside the CSV) the scores of the labelled predictions."""
    from kmat.run.labels import confusion_text, score
    from kmat.utils.io import atomic_write_json

    if not true_of:
        print(
            "kmat: warning: no predicted image has a true label (a class-named folder or a --labels row); "
            "nothing was scored",
            file=sys.stderr,
        )
        return 0
    index = {c: i for i, c in enumerate(classes)}
    order = sorted(true_of)
    scores = score([true_of[i] for i in order], [index[preds[i].label] for i in order], classes)
    unlabelled = len(preds) - len(true_of)
    scores["modality"] = args.modality
    scores["run"] = str(args.run)
    print(
        f"scored {scores['n']} labelled image(s) with the {args.modality}-end prompts: "
        f"accuracy {scores['acc']:.2f}%, macro-F1 {scores['macro_f1']:.2f}%"
        + (f" ({unlabelled} image(s) without a label not scored)" if unlabelled else "")
    )
    print(confusion_text(scores))
    if args.out:
        path = metrics_path(args.out)
        atomic_write_json(path, scores)
        print(f"wrote the scores to {path}")
    return 0
