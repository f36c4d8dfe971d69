"""``kmat backbone``: write a random-weight BiomedCLIP-shaped (or OpenAI-CLIP-shaped) model folder."""

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
    p.add_argument(
        "--text",
        choices=["hf", "native"],
        default="hf",
        help="hf: BiomedCLIP's BERT text tower (default); native: open_clip's own text transformer "
        "with CLIP's tokenizer (OpenAI CLIP's layout)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kmat.tools.tinymodel import write_tiny_biomedclip

    folder = write_tiny_biomedclip(args.out, size=args.size, seed=args.seed, text=args.text)
    shape = "OpenAI-CLIP-shaped" if args.text == "native" else "BiomedCLIP-shaped"
    print(f"wrote a random-weight {args.size} {shape} model to {folder}")
    print(f"use it with: --backbone local-dir:{folder}")
    return 0
