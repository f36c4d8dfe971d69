"""``kmat bench``: speed and memory benchmark."""

from __future__ import annotations

import argparse

from kmat import PRECISIONS


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench",
        parents=parents,
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
