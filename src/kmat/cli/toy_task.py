"""``kmat toy-task``: write the toy task folder."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "toy-task",
        parents=parents,
        help="write the tiny procedural toy task folder",
        description="Write a small 3-class cross-modal task (hiscan -> loscan) in the manifest format.",
    )
    p.add_argument("--out", required=True)
    p.add_argument("--n-train", type=int, default=8, help="train images per class and modality")
    p.add_argument("--n-test", type=int, default=4, help="test images per class and modality")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kmat.tools.toy import write_toy_task

    folder = write_toy_task(args.out, n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    print(f"wrote the toy task to {folder}")
    return 0
