"""``kmat predict``: classify new images with the prompts a run learned."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "predict",
        parents=parents,
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

    from kmat.run.predict import collect_images, load_run, predict_images

    loaded = load_run(args.run)  # a clear error about the run before looking for images
    images = collect_images(args.images)
    preds = predict_images(
        args.run,
        images,
        role=args.modality,
        device=args.device,
        loaded=loaded,
        backbone_spec=args.backbone,
        allow_backbone_mismatch=args.allow_backbone_mismatch,
    )
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
