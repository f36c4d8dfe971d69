"""``kmat backbone``: write a random-weight BiomedCLIP-shaped model folder."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "backbone",
        parents=parents,
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kmat.tools.tinymodel import write_tiny_biomedclip

    folder = write_tiny_biomedclip(args.out, size=args.size, seed=args.seed)
    print(f"wrote a random-weight {args.size} BiomedCLIP-shaped model to {folder}")
    print(f"use it with: --backbone local-dir:{folder}")
    return 0
