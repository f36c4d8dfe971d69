"""``kmat tasks``: list the tasks under the data root and whether they are prepared."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "tasks",
        parents=parents,
        help="show each task, where its data is expected, and whether it is prepared",
        description="List the paper's tasks (and any other task folder) under the data root.",
    )
    p.add_argument("--data-root", default=None, help="default: $KMAT_DATA")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kmat.tools.preparers import format_task_list, list_tasks

    print(format_task_list(list_tasks(args.data_root)))
    return 0
