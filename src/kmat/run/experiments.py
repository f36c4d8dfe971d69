"""The paper's experiment grids: Table 2 (methods x tasks x seeds) and Table 3 (the ablation)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kmat.methods import get_method
from kmat.methods.config import options_of
from kmat.run.layout import grid_run_dir

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
    options: dict[str, Any] = field(default_factory=dict, hash=False)  # everything the run is given
    tag: dict[str, Any] = field(default_factory=dict, hash=False)  # the user's part of it, in the path

    def run_dir(self, out: str | Path) -> Path:
        """``OUT/runs/<task>/<label>/<shots>shot[-<tag>]/seed<S>`` (:func:`kmat.run.layout.grid_run_dir`)."""
        return grid_run_dir(out, self.task, self.label, self.shots, self.seed, self.tag)

    @property
    def name(self) -> str:
        """Readable name of the run (its path below ``OUT/runs``)."""
        return "/".join(self.run_dir("").parts[-4:])


def method_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """The part of ``options`` that ``method``'s config has a field for."""
    known = options_of(get_method(method).Config)
    return {k: v for k, v in options.items() if k in known}


def ablation_options(label: str) -> dict[str, bool]:
    for lab, csc, msc, anchor, fgw in ABLATION_ROWS:
        if lab == label:
            return {"csc": csc, "msc": msc, "anchor": anchor, "fgw": fgw}
    raise KeyError(label)


def table2_grid(
    tasks: list[tuple[str, str]], methods: list[str], seeds: list[int], shots: int, options: dict[str, Any]
) -> list[RunSpec]:
    """``tasks``: (name, argument) pairs. One run per task x method x seed; each method takes the
    ``options`` its config has."""
    specs = []
    for name, arg in tasks:
        for m in methods:
            own = method_options(m, options)
            specs += [RunSpec(name, arg, m, m, s, shots, dict(own), dict(own)) for s in seeds]
    return specs


def table3_grid(
    tasks: list[tuple[str, str]],
    seeds: list[int],
    shots: int,
    options: dict[str, Any],
    rows: list[str] | None = None,
) -> list[RunSpec]:
    """The ablation rows of K-MaT (row ``kmat`` is the full method, shared with Table 2)."""
    labels = rows or [r[0] for r in ABLATION_ROWS]
    own = method_options("kmat", options)
    return [
        RunSpec(
            name,
            arg,
            lab,
            "kmat",
            s,
            shots,
            {**own, **ablation_options(lab)} if lab != "kmat" else dict(own),
            dict(own),
        )
        for name, arg in tasks
        for lab in labels
        for s in seeds
    ]
