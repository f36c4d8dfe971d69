"""``kmat evaluate``: re-evaluate a trained run from its checkpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kmat.cli._common import print_metrics

EVAL_SPLITS = ("test", "val")  # as kmat.run.runner.EVAL_SPLITS (not imported here: the parser stays light)


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "evaluate",
        parents=parents,
        help="re-evaluate a trained run from its checkpoint",
        description="Rebuild the learned prompts from RUN/checkpoint.safetensors and evaluate them on "
        "the test splits (the run's metrics) or the validation splits of both modalities. The model "
        "is the checkpoint's: the run's last epoch, as in the paper (no epoch is re-selected).",
    )
    p.add_argument("--run", required=True, help="run folder (or checkpoint file) written by kmat train")
    p.add_argument("--task", default=None, help="override the task folder/name saved in the checkpoint")
    p.add_argument("--data-root", default=None, help="root of prepared tasks (default: $KMAT_DATA)")
    p.add_argument(
        "--split",
        choices=EVAL_SPLITS,
        default="test",
        help="which splits to score: test (default; the run's reported metrics) or val (the "
        "validation splits; the high-end one matches the run's val.high; a modality without "
        "validation images, usually the low end, is reported as absent: null in --json)",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
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
    from kmat.run.layout import RunLayout
    from kmat.run.runner import evaluate_checkpoint

    path = Path(args.run)
    ckpt = RunLayout.of(path).checkpoint if path.is_dir() else path
    metrics = evaluate_checkpoint(
        ckpt,
        task=args.task,
        data_root=args.data_root,
        backbone_spec=args.backbone,
        allow_backbone_mismatch=args.allow_backbone_mismatch,
        split=args.split,
    )
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print_metrics(
            metrics,
            f"re-evaluated {ckpt} on the {args.split} splits:",
            absent=f"absent (no {args.split} images)",
        )
    return 0
