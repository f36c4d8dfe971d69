"""The sensitivity study of K-MaT (``kmat reproduce --table sensitivity``), from ``result.json`` files only.

The runs are those of label :data:`~kmat.run.experiments.SENSITIVITY_LABEL`. They are grouped by
*setting* (the shots and the options given on top of the swept ones: a grid run with ``--epochs 2``
is never averaged with one run with ``--epochs 50``), then by task and cell (alpha, lambda_fgw,
lambda_anchor), the values read from each result's resolved method configuration (not from the
folder name, which is shortened with a hash when long). At lambda_fgw = 0 the FGW term is off and
alpha has no effect: that cell is one set of runs, shown under every alpha.

Per cell, over seeds: mean and std of the low-end test accuracy (Lo) and of H (computed per run,
then averaged, as in the paper tables), and the mean high-end validation accuracy (``val.high.acc``
of each result; ``None`` when a run of the cell does not record it). "Avg.": the mean over tasks of
the per-task means (std: the mean of the per-task stds), for the cells every task has.
"""

from __future__ import annotations

import logging
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from kmat.run.experiments import PAPER_TASKS, SENSITIVITY_LABEL, SWEPT_OPTIONS, TASK_DISPLAY
from kmat.run.layout import options_tag

log = logging.getLogger(__name__)

AVG = "avg"  # the pseudo-task of the mean over tasks
SUMMARY_LAMBDA_ANCHOR = 1.0  # K-MaT's default lambda_anchor: where the summary compares lambda_fgw values

Stat = tuple[float, float, int]  # mean, std, n (seeds; Avg.: the fewest seeds of a task, so no ± if one)
# task, alpha (None at lambda_fgw = 0), lambda_fgw, lambda_anchor
CellKey = tuple[str, float | None, float, float]


@dataclass(frozen=True)
class SensCell:
    """One cell over seeds (accuracies in %)."""

    low: Stat  # low-end test accuracy
    h: Stat  # H of the test accuracies, per run then averaged
    val_high: float | None  # mean high-end validation accuracy; None if a run has none


@dataclass
class SensitivityStudy:
    """The cells of one setting, per task (and :data:`AVG` when there are several tasks)."""

    setting: str  # "16shot" or "16shot-epochs=1": the run folders' setting without the swept options
    tasks: list[str]  # display order, without AVG
    alphas: list[float]  # the alpha values of cells with lambda_fgw > 0
    lambda_fgws: list[float]
    lambda_anchors: list[float]
    cells: dict[CellKey, SensCell] = field(default_factory=dict)

    @property
    def panel_alphas(self) -> list[float | None]:
        """One table or heat-map panel per alpha (``[None]``: the grid has only lambda_fgw = 0)."""
        return list(self.alphas) or [None]

    @property
    def report_tasks(self) -> list[str]:
        """The tasks, then :data:`AVG` when there are several."""
        return self.tasks + ([AVG] if len(self.tasks) > 1 else [])

    def cell(
        self, task: str, alpha: float | None, lambda_fgw: float, lambda_anchor: float
    ) -> SensCell | None:
        return self.cells.get((task, None if lambda_fgw == 0 else alpha, lambda_fgw, lambda_anchor))

    def seed_counts(self, task: str) -> list[int]:
        """The distinct seed counts of the task's cells, sorted (Avg.: of every task's cells)."""
        tasks = set(self.tasks) if task == AVG else {task}
        return sorted({c.low[2] for k, c in self.cells.items() if k[0] in tasks})


def task_title(task: str) -> str:
    return "Avg." if task == AVG else TASK_DISPLAY.get(task, task)


def seeds_text(study: SensitivityStudy, task: str) -> str:
    """The seed count of a task's cells: "3 seeds", "1-3 seeds per cell", Avg.: "3 seeds per task"."""
    ns = study.seed_counts(task)
    if not ns:
        return "no runs"
    count = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
    unit = "seed" if ns[-1] == 1 else "seeds"
    return f"{count} {unit}" + (" per task" if task == AVG else "" if len(ns) == 1 else " per cell")


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:g}"


def _point(row: dict) -> tuple[str, tuple[float | None, float, float]] | None:
    """(setting, (alpha or None, lambda_fgw, lambda_anchor)) of a run, from its recorded configuration."""
    mc, given = row.get("method_config"), row.get("options")
    if not isinstance(mc, dict) or not isinstance(given, dict) or not all(k in mc for k in SWEPT_OPTIONS):
        return None
    try:
        alpha, lf, la = (float(mc[k]) for k in ("alpha", "lambda_fgw", "lambda_anchor"))
    except (TypeError, ValueError):
        return None
    rest = {k: v for k, v in given.items() if k not in SWEPT_OPTIONS}
    setting = f"{row.get('shots')}shot" + (f"-{options_tag(rest)}" if rest else "")
    return setting, (None if lf == 0 else alpha, lf, la)


def _val_high(row: dict) -> float | None:
    val: Any = row.get("val")  # {"high": {"acc": ..}, ...}, or absent in older results
    try:
        return float(val["high"]["acc"])
    except (KeyError, TypeError, ValueError):
        return None


def _stat(vals: list[float]) -> Stat:
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals)


def _seed_cell(rows: list[dict]) -> SensCell:
    vals = [_val_high(r) for r in rows]
    known = [v for v in vals if v is not None]
    return SensCell(
        low=_stat([r["low_acc"] for r in rows]),
        h=_stat([r["h_acc"] for r in rows]),
        val_high=statistics.fmean(known) if known and len(known) == len(vals) else None,
    )


def _task_cell(cells: list[SensCell]) -> SensCell:
    def mean_of(stats: list[Stat]) -> Stat:
        return (
            statistics.fmean(s[0] for s in stats),
            statistics.fmean(s[1] for s in stats),
            min(s[2] for s in stats),
        )

    vals = [c.val_high for c in cells]
    return SensCell(
        low=mean_of([c.low for c in cells]),
        h=mean_of([c.h for c in cells]),
        val_high=None if any(v is None for v in vals) else statistics.fmean(v for v in vals if v is not None),
    )


def _task_order(tasks: set[str]) -> list[str]:
    return [t for t in PAPER_TASKS if t in tasks] + sorted(t for t in tasks if t not in PAPER_TASKS)


def sensitivity_studies(rows: list[dict]) -> list[SensitivityStudy]:
    """One study per setting of the sensitivity runs among ``rows`` (:func:`kmat.report.results.collect`)."""
    groups: dict[str, dict[CellKey, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.get("run_label") != SENSITIVITY_LABEL:
            continue
        point = _point(r)
        if point is None:
            log.warning("sensitivity: skipped %s (no recorded method configuration or options)", r["path"])
            continue
        setting, (alpha, lf, la) = point
        groups[setting][(r["task"], alpha, lf, la)].append(r)
    studies = []
    for setting in sorted(groups):
        runs = groups[setting]
        keys = list(runs)
        study = SensitivityStudy(
            setting=setting,
            tasks=_task_order({k[0] for k in keys}),
            alphas=sorted({k[1] for k in keys if k[1] is not None}),
            lambda_fgws=sorted({k[2] for k in keys}),
            lambda_anchors=sorted({k[3] for k in keys}),
            cells={k: _seed_cell(rs) for k, rs in runs.items()},
        )
        if len(study.tasks) > 1:
            for _, alpha, lf, la in keys:
                found = [study.cells.get((t, alpha, lf, la)) for t in study.tasks]
                cells = [c for c in found if c is not None]
                if len(cells) == len(found):  # every task has the cell
                    study.cells[(AVG, alpha, lf, la)] = _task_cell(cells)
        studies.append(study)
    return studies


@dataclass(frozen=True)
class SummaryRow:
    """At lambda_anchor = :data:`SUMMARY_LAMBDA_ANCHOR` and one alpha: per lambda_fgw value, the mean
    high-end validation accuracy and the mean low-end test accuracy, and their ranges."""

    task: str
    alpha: float | None
    val_high: dict[float, float]  # lambda_fgw -> mean high-end validation accuracy (cells that have it)
    low: dict[float, float]  # lambda_fgw -> mean low-end test accuracy

    @staticmethod
    def _range(d: dict[float, float]) -> float | None:
        return max(d.values()) - min(d.values()) if len(d) > 1 else None

    @property
    def val_range(self) -> float | None:
        return self._range(self.val_high)

    @property
    def low_range(self) -> float | None:
        return self._range(self.low)

    @staticmethod
    def _best(d: dict[float, float]) -> list[float]:
        top = max(d.values(), default=0.0)
        return [k for k, v in d.items() if v == top] if len(d) > 1 else []

    @property
    def val_best(self) -> list[float]:
        """The lambda_fgw value(s) the high-end validation split would pick (all of them on a tie)."""
        return self._best(self.val_high)

    @property
    def low_best(self) -> list[float]:
        """The lambda_fgw value(s) with the best low-end test accuracy."""
        return self._best(self.low)


def summary_rows(study: SensitivityStudy) -> list[SummaryRow]:
    """A :class:`SummaryRow` per task (and Avg.) and alpha; none if the grid lacks lambda_anchor = 1."""
    out: list[SummaryRow] = []
    if SUMMARY_LAMBDA_ANCHOR not in study.lambda_anchors:
        return out
    for task in study.report_tasks:
        for alpha in study.panel_alphas:
            val: dict[float, float] = {}
            low: dict[float, float] = {}
            for lf in study.lambda_fgws:
                c = study.cell(task, alpha, lf, SUMMARY_LAMBDA_ANCHOR)
                if c is None:
                    continue
                low[lf] = c.low[0]
                if c.val_high is not None:
                    val[lf] = c.val_high
            out.append(SummaryRow(task, alpha, val, low))
    return out


def _best_text(best: list[float], of: dict[float, float]) -> str:
    if not best:
        return "–"
    return "all equal" if len(best) == len(of) else ", ".join(_num(v) for v in best)


def _range_text(d: dict[float, float], r: float | None) -> str:
    return "–" if r is None else f"{r:.1f} ({min(d.values()):.1f}–{max(d.values()):.1f})"


def _stat_text(s: Stat) -> str:
    return f"{s[0]:.1f}" + (f"±{s[1]:.1f}" if s[2] > 1 else "")


def cell_text(c: SensCell | None, seeds: int) -> str:
    """``Lo 39.2±1.3 · H 44.1±0.8 · val Hi 55.0`` (" (n=2)" when the cell has fewer seeds than
    ``seeds``; no ± for one seed)."""
    if c is None:
        return "–"
    val = "–" if c.val_high is None else f"{c.val_high:.1f}"
    text = f"Lo {_stat_text(c.low)} · H {_stat_text(c.h)} · val Hi {val}"
    return text + (f" (n={c.low[2]})" if c.low[2] < seeds else "")


def summary_markdown(study: SensitivityStudy) -> str:
    """The summary block: does the high-end validation accuracy move with lambda_fgw as Lo does?"""
    la = _num(SUMMARY_LAMBDA_ANCHOR)
    lfs = ", ".join(_num(v) for v in study.lambda_fgws)
    head = [
        f"### Summary: can the high-end validation split see lambda_fgw? (lambda_anchor = {la})",
        "",
        f"Range (max − min) over lambda_fgw ∈ {{{lfs}}} of the mean high-end validation accuracy and of "
        "the mean low-end test accuracy (min–max in brackets), and the lambda_fgw each one picks. A "
        "validation range much smaller than the Lo range means that tuning lambda_fgw on the high-end "
        "validation split (the paper's protocol) cannot see what it does to the low-end modality.",
        "",
    ]
    rows = summary_rows(study)
    if not rows:
        return "\n".join(head) + f"(lambda_anchor = {la} is not in this grid: no summary.)\n"
    lines = head + [
        "| Task | alpha | val Hi range | Lo (test) range | lambda_fgw best on val Hi | best on Lo |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {task_title(r.task)} | {_num(r.alpha)} | {_range_text(r.val_high, r.val_range)} "
            f"| {_range_text(r.low, r.low_range)} | {_best_text(r.val_best, r.val_high)} "
            f"| {_best_text(r.low_best, r.low)} |"
        )
    return "\n".join(lines) + "\n"


def grid_markdown(study: SensitivityStudy, task: str) -> str:
    """Per alpha, a table: rows lambda_fgw, columns lambda_anchor, cells :func:`cell_text`."""
    seeds = max((c.low[2] for k, c in study.cells.items() if k[0] == task), default=0)
    lines = [f"### {task_title(task)} ({seeds_text(study, task)})", ""]
    for alpha in study.panel_alphas:
        title = f"alpha = {_num(alpha)}" if alpha is not None else "alpha: no effect (only lambda_fgw = 0)"
        lines += [
            f"#### {title}",
            "",
            "| lambda_fgw | " + " | ".join(f"lambda_anchor = {_num(v)}" for v in study.lambda_anchors) + " |",
            "|---|" + "---|" * len(study.lambda_anchors),
        ]
        for lf in study.lambda_fgws:
            name = f"{_num(lf)} (L_FGW off)" if lf == 0 else _num(lf)
            cells = [cell_text(study.cell(task, alpha, lf, la), seeds) for la in study.lambda_anchors]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def sensitivity_markdown(studies: list[SensitivityStudy]) -> str:
    """The whole ``sensitivity.md``: per setting, the summary, then per task (and Avg.) the tables."""
    lines = [
        "# Sensitivity of K-MaT: alpha x lambda_fgw x lambda_anchor",
        "",
        f"K-MaT runs of `runs/<task>/{SENSITIVITY_LABEL}/`; every option not swept is at its default, or "
        "as given (then it is in the setting's name).",
        "",
        "- alpha: the FGW structure weight; lambda_fgw: the weight of L_FGW; lambda_anchor: the weight "
        "of L_anchor. Tables: rows lambda_fgw, columns lambda_anchor, one table per alpha.",
        "- A cell, in %: `Lo <acc>±<std> · H <acc>±<std> · val Hi <acc>`: the low-end test accuracy "
        "and H (the harmonic mean of the high- and low-end test accuracies, per run), mean ± std over "
        'seeds (no ± for one seed; "(n=k)": a cell with fewer seeds than the others), and the mean '
        'high-end validation accuracy ("–": not in result.json).',
        "- lambda_fgw = 0: L_FGW is off and alpha has no effect; that row is one set of runs, repeated "
        "under every alpha.",
        "- Avg.: the mean over tasks of the per-task means (± the mean of the per-task stds), for the "
        "cells every task has.",
        "",
    ]
    if not studies:
        return "\n".join(lines) + f"(no finished runs under runs/*/{SENSITIVITY_LABEL}/)\n"
    for study in studies:
        tasks = ", ".join(task_title(t) for t in study.tasks)
        lines += [f"## Setting {study.setting} (tasks: {tasks})", "", summary_markdown(study)]
        lines += [grid_markdown(study, t) for t in study.report_tasks]
    return "\n".join(lines).rstrip() + "\n"


def sensitivity_summary_text(studies: list[SensitivityStudy]) -> str:
    """The summary blocks alone (what the command line prints; the tables are in the file)."""
    return "\n".join(f"## Setting {s.setting}\n\n{summary_markdown(s)}" for s in studies) or (
        "(no sensitivity runs)\n"
    )


def studies_file_suffix(studies: list[SensitivityStudy], study: SensitivityStudy) -> str:
    """The figure-name suffix of a study: none for the only setting, ``"-<setting>"`` with several."""
    return "" if len(studies) == 1 else f"-{study.setting}"
