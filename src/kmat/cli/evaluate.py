"""``kmat evaluate``: re-evaluate a trained run from its checkpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kmat.cli._common import print_metrics


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "evaluate",
        parents=parents,
        help="re-evaluate a trained run from its checkpoint",
        description="Rebuild the learned prompts from RUN/checkpoint.safetensors and evaluate them.",
    )
    p.add_argument("--run", required=True, help="run folder (or checkpoint file) written by kmat train")
    p.add_argument("--task", default=None, help="override the task folder/name saved in the checkpoint")
    p.add_argument("--data-root", default=None, help="root of prepared tasks (default: $KMAT_DATA)")
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
    )
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print_metrics(metrics, f"re-evaluated {ckpt}:")
    return 0
