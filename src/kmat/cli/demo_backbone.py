"""``kmat demo-backbone``: pre-train the demo backbone."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo-backbone",
        parents=parents,
        help="pre-train the demo backbone on captions of both SynthMed pairs into a folder",
        description="Build the small BiomedCLIP-family demo backbone (seeded; see "
        "kmat.tools.demo_backbone for the recipe) and save it in open_clip local-dir format.",
    )
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=None, help="default 0")
    p.add_argument(
        "--n-per-class",
        dest="n_per_class",
        type=int,
        default=None,
        help="images per class and modality of each pair (default 250)",
    )
    p.add_argument("--epochs", type=int, default=None, help="default 40")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=None, help="default 64")
    p.add_argument("--lr", type=float, default=None, help="default 2e-3")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kmat.tools.demo_backbone import DEFAULTS, build_demo_backbone

    params = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k, None) is not None}
    folder = build_demo_backbone(args.out, show_progress=not args.quiet, **params)
    print(f"wrote the demo backbone to {folder}; use it with --backbone local-dir:{folder}")
    return 0
