"""The paper's experiment grids: Table 2 (methods x tasks x seeds) and Table 3 (the ablation)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PAPER_TASKS = ["skin1", "skin2", "chest", "breast"]  # paper Table 2 order
TASK_DISPLAY = {"skin1": "Skin I", "skin2": "Skin II", "chest": "Chest", "breast": "Breast"}

# (run label, method, display name) in the paper's column order
TABLE2_METHODS: list[tuple[str, str]] = [
    ("zeroshot", "BiomedCLIP"),
    ("coop", "CoOp"),
    ("kgcoop", "KgCoOp"),
    ("cocoop", "CoCoOp"),
    ("biomedcoop", "BiomedCoOp"),
    ("kmat", "K-MaT"),
]

# Table 3 rows: (run label, CSC, MSC, anchor, FGW). Row 8 is K-MaT itself and shares Table 2's runs.
ABLATION_ROWS: list[tuple[str, bool, bool, bool, bool]] = [
    ("kmat-r1", False, False, False, False),
    ("kmat-r2", True, False, False, False),
    ("kmat-r3", True, True, False, False),
    ("kmat-r4", True, True, False, True),
    ("kmat-r5", True, True, True, False),
    ("kmat-r6", False, True, True, True),
    ("kmat-r7", True, False, True, True),
    ("kmat", True, True, True, True),
]


@dataclass(frozen=True)
class RunSpec:
    """One cell of a grid: where it is written and what it runs."""

    task: str  # task name (run folder) ...
    task_arg: str  # ... and what resolves it (name or folder)
    label: str  # run folder name: method, or ablation row
    method: str
    seed: int
    shots: int
    options: dict[str, Any] = field(default_factory=dict, hash=False)

    def run_dir(self, out) -> str:
        return f"{out}/runs/{self.task}/{self.label}/seed{self.seed}"


def ablation_options(label: str) -> dict[str, bool]:
    for lab, csc, msc, anchor, fgw in ABLATION_ROWS:
        if lab == label:
            return {"csc": csc, "msc": msc, "anchor": anchor, "fgw": fgw}
    raise KeyError(label)


def table2_grid(
    tasks: list[tuple[str, str]], methods: list[str], seeds: list[int], shots: int, options: dict[str, Any]
) -> list[RunSpec]:
    """``tasks``: (name, argument) pairs. One run per task x method x seed."""
    return [
        RunSpec(name, arg, m, m, s, shots, dict(options))
        for name, arg in tasks
        for m in methods
        for s in seeds
    ]


def table3_grid(
    tasks: list[tuple[str, str]],
    seeds: list[int],
    shots: int,
    options: dict[str, Any],
    rows: list[str] | None = None,
) -> list[RunSpec]:
    labels = rows or [r[0] for r in ABLATION_ROWS]
    return [
        RunSpec(
            name,
            arg,
            lab,
            "kmat",
            s,
            shots,
            {**options, **ablation_options(lab)} if lab != "kmat" else dict(options),
        )
        for name, arg in tasks
        for lab in labels
        for s in seeds
    ]
