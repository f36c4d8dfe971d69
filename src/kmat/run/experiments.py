"""The experiment grids: the paper's Table 2 (methods x tasks x seeds), Table 2+ (the same with every
registered method), Table 3 (the ablation), and a sensitivity grid of K-MaT (alpha x lambda_fgw x
lambda_anchor) that no paper table shows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kmat.errors import ConfigError
from kmat.methods import available_methods, get_method
from kmat.methods.config import check_value, options_of
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

# Table 2+: the paper's six methods first, then the other prompt learners and adapters (none of them in
# the paper), in this order and with these display names; then any other registered method, sorted.
# A method named here but not registered in this process is skipped (table2_plus_methods).
TABLE2_PLUS: list[tuple[str, str]] = [
    *TABLE2_METHODS,
    ("prograd", "ProGrad"),
    ("linear_probe", "Linear probe"),
    ("lp_pp", "LP++"),
    ("clip_adapter", "CLIP-Adapter"),
    ("tip_adapter", "Tip-Adapter"),
    ("tip_adapter_f", "Tip-Adapter-F"),
    ("zeroshot_desc", "BiomedCLIP (desc.)"),  # zero-shot with the description prototypes (K-MaT's anchor)
]
METHOD_DISPLAY: dict[str, str] = dict(TABLE2_PLUS)  # run label -> column name in tables and figures
NOT_STRICT_MARK = "†"  # ends the row label of a run that is not strictly zero-shot


def display_name(label: str) -> str:
    """``"K-MaT [16shot-alpha=0.1]"`` for the row label ``"kmat [16shot-alpha=0.1]"``, ``"K-MaT tuned†"``
    for ``"kmat tuned†"``."""
    mark = NOT_STRICT_MARK if label.endswith(NOT_STRICT_MARK) else ""
    base, sep, rest = label.removesuffix(NOT_STRICT_MARK).partition(" ")
    return METHOD_DISPLAY.get(base, base) + sep + rest + mark


def table2_plus_methods(registered: Iterable[str] | None = None) -> tuple[list[str], list[str]]:
    """``(methods, skipped)`` of Table 2+: the methods of :data:`TABLE2_PLUS` that are registered,
    in its order, then every other registered method sorted (``registered``: default
    :func:`kmat.methods.available_methods`); ``skipped``: those of :data:`TABLE2_PLUS` not registered."""
    avail = list(available_methods() if registered is None else registered)
    declared = [m for m, _ in TABLE2_PLUS]
    methods = [m for m in declared if m in avail] + sorted(set(avail) - set(declared))
    return methods, [m for m in declared if m not in avail]


def table2_columns(labels: Iterable[str], variants: bool = True) -> list[str]:
    """The run labels among ``labels`` that are Table 2 columns, in its order: those of
    :data:`TABLE2_PLUS` in its order, then the others sorted. Ablation rows (but ``kmat``) and
    sensitivity runs are not columns; ``variants=False`` also leaves out labels that carry their
    setting (``kmat [4shot]``)."""
    ablation = {r[0] for r in ABLATION_ROWS} - {"kmat"}
    keep = {
        lab
        for lab in labels
        if lab not in ablation
        and lab.partition(" [")[0] != SENSITIVITY_LABEL
        and (variants or " [" not in lab)
    }
    known = [m for m, _ in TABLE2_PLUS]
    return [lab for lab in known if lab in keep] + sorted(keep - set(known))


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


# The sensitivity grid of K-MaT (no paper table): the FGW structure weight x the two loss weights.
# Its runs get their own label rather than "kmat": collect() tells apart the settings of one
# (task, label) by renaming the label ("kmat [16shot]"), so forty sensitivity settings under "kmat"
# would rename Table 2's K-MaT column, add forty columns to it, and hide row 8 of Table 3 (the "kmat"
# runs) and the Fig. 2 plots, which look the label up. A separate label keeps the paper tables as
# they are when both grids write to one output folder.
SENSITIVITY_LABEL = "kmat-sens"
SENSITIVITY_VALUES: dict[str, tuple[float, ...]] = {
    "alpha": (0.1, 0.5, 0.9),
    "lambda_fgw": (0.0, 0.3, 1.0, 3.0),
    "lambda_anchor": (0.0, 0.3, 1.0, 3.0),
}
SWEPT_OPTIONS = tuple(SENSITIVITY_VALUES)  # alpha, lambda_fgw, lambda_anchor
# options that would make the swept weights meaningless in every cell, with the value that does
_DISABLING = {"fgw": False, "anchor": False}


def _values(name: str, values: list[float] | tuple[float, ...] | None) -> list[float]:
    """The values of one swept option, checked against K-MaT's bounds, duplicates dropped."""
    chosen = SENSITIVITY_VALUES[name] if values is None else values
    if not chosen:
        raise ConfigError(f"sensitivity grid: no values for {name}")
    info = options_of(get_method("kmat").Config)[name]
    out: list[float] = []
    for v in chosen:
        try:
            v = float(check_value(info, float(v), "sensitivity grid"))
        except (TypeError, ValueError) as err:  # ConfigError is a ValueError
            # "sensitivity grid.alpha must be <= 1, got 1.5"; no field: the option's own flag does not
            # set these values
            raise ConfigError(str(err)) from None
        if v not in out:
            out.append(v)
    return out


def sensitivity_cells(
    alphas: list[float] | None = None,
    lambda_fgws: list[float] | None = None,
    lambda_anchors: list[float] | None = None,
) -> list[dict[str, float]]:
    """The swept options of each cell: alpha x lambda_fgw x lambda_anchor (defaults:
    :data:`SENSITIVITY_VALUES`). At lambda_fgw = 0 the FGW term is off and alpha has no effect, so
    that cell is run once, without alpha (K-MaT's default alpha, unused)."""
    a = _values("alpha", alphas)
    f = _values("lambda_fgw", lambda_fgws)
    n = _values("lambda_anchor", lambda_anchors)
    cells: list[dict[str, float]] = []
    for lf in f:
        for al in [None] if lf == 0 else a:
            for la in n:
                cell = {"lambda_fgw": lf, "lambda_anchor": la}
                cells.append(cell if al is None else {"alpha": al, **cell})
    return cells


def sensitivity_grid(
    tasks: list[tuple[str, str]],
    seeds: list[int],
    shots: int,
    options: dict[str, Any],
    alphas: list[float] | None = None,
    lambda_fgws: list[float] | None = None,
    lambda_anchors: list[float] | None = None,
) -> list[RunSpec]:
    """K-MaT over :func:`sensitivity_cells` per task and seed, label :data:`SENSITIVITY_LABEL`.

    ``options`` (K-MaT's part of them) apply to every cell; with the swept values they form the run
    folder's tag (``16shot-alpha=0.5,lambda_anchor=1,lambda_fgw=0.3``). An option the grid sweeps,
    or one that turns a swept term off (``fgw``/``anchor`` false), is a :class:`ConfigError`."""
    own = method_options("kmat", options)
    for name in SWEPT_OPTIONS:
        if name in own:
            raise ConfigError(
                f"option {name} is varied by the sensitivity grid and cannot also be given as an option "
                f"(the grid's {name} values set it)",
                field=name,
            )
    for name, off in _DISABLING.items():
        if name in own and own[name] == off:
            raise ConfigError(
                f"option {name}={off} turns its term off in every cell of the sensitivity grid, "
                "so the weight the grid varies would have no effect",
                field=name,
            )
    cells = sensitivity_cells(alphas, lambda_fgws, lambda_anchors)
    return [
        RunSpec(name, arg, SENSITIVITY_LABEL, "kmat", s, shots, {**own, **c}, {**own, **c})
        for name, arg in tasks
        for c in cells
        for s in seeds
    ]
