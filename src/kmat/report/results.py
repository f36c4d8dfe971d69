"""Run results -> per-run CSV, the paper's tables and the sensitivity report
(:mod:`kmat.report.sensitivity`). Computed from ``result.json`` files only.

Across seeds: mean (and std) of each run's Hi, Lo and H (H is computed per run, then averaged).
"Avg." rows: mean over tasks of the per-task means.

The runs are a grid's (``OUT/runs``) and a tune's final runs (``OUT/final/seed<S>``: row label
``<method> tuned``). A run that is not strictly zero-shot (:func:`kmat.run.schema.is_strict_zero_shot`:
its configuration was chosen on low-end validation labels) gets a row label of its own ending in
:data:`NOT_STRICT_MARK`, so it is never averaged with strict runs; the tables footnote the mark and
``results.csv`` says ``strict_zero_shot`` per run.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import statistics
from collections import defaultdict
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kmat.errors import ConfigError, KmatError, ResultError
from kmat.report.sensitivity import sensitivity_markdown, sensitivity_studies, sensitivity_summary_text
from kmat.run.experiments import (
    ABLATION_ROWS,
    NOT_STRICT_MARK,
    PAPER_TASKS,
    SENSITIVITY_LABEL,
    TABLE2_PLUS,
    TASK_DISPLAY,
    display_name,
)
from kmat.run.layout import RunLayout, iter_final_runs, iter_grid_runs
from kmat.run.schema import Result, differences, identity_of, is_strict_zero_shot, read_checked_result
from kmat.utils.cache import STALE_TMP_S
from kmat.utils.io import atomic_write_bytes, output_errors, remove_stale_temp_files

log = logging.getLogger(__name__)

METRIC_KEYS = [(role, m) for role in ("high", "low", "h") for m in ("acc", "macro_f1")]
ROLE_LABEL = {"high": "Hi", "low": "Lo", "h": "H"}
NOT_STRICT_NOTE = (
    f"{NOT_STRICT_MARK} not strict zero-shot: low-end validation labels chose the configuration "
    "(`kmat tune --select-on low-val`); compare only with other such results (never averaged with "
    "strict zero-shot runs)."
)
TUNED = "tuned"  # the row label of a tune's final runs: "<method> tuned"


@dataclass
class RunSet:
    """The runs under ``OUT/runs`` as the reports see them (:func:`read_runs`).

    ``rows``: one per run whose ``result.json`` is valid (``results.csv`` lists them all);
    ``table_rows``: those of them that may be averaged, i.e. without the cells in ``mixed``;
    ``invalid``: ``"<result.json>: <what is wrong>"`` per run left out;
    ``mixed``: ``"<cell folder>: ..."`` per (task, label, setting) cell whose runs were made with
    different configurations (left out of the tables, never averaged);
    ``mixed_runs``: how many runs those cells hold.
    """

    rows: list[dict] = field(default_factory=list)
    table_rows: list[dict] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    mixed: list[str] = field(default_factory=list)
    mixed_runs: int = 0

    @property
    def problems(self) -> list[str]:
        """One line per run or cell left out of the tables."""
        return self.invalid + self.mixed

    @property
    def skipped(self) -> int:
        """How many runs the tables leave out."""
        return len(self.invalid) + self.mixed_runs

    def skipped_text(self) -> str:
        """``"3 run(s) left out: ..."`` (markdown, a paragraph and a list), or "" when none is."""
        if not self.skipped:
            return ""
        parts = []
        if self.invalid:
            parts.append(f"{len(self.invalid)} with an unreadable or invalid result.json")
        if self.mixed:
            parts.append(
                f"{self.mixed_runs} in {len(self.mixed)} cell(s) whose runs have different configurations"
            )
        return f"**{self.skipped} run(s) left out of these tables** ({'; '.join(parts)}):\n\n" + "".join(
            f"- {p}\n" for p in self.problems
        )


def config_key(result: Result) -> dict[str, Any]:
    """What must be equal for runs to be averaged: the run's identity
    (:func:`kmat.run.schema.identity_of`: method, task, shots, backbone, precision, augment and the
    resolved ``method_config``) without the seed; the backbone by its weights where recorded (a
    moved model folder is the same backbone)."""
    key = identity_of(result)
    key.pop("seed", None)
    recorded = (result.get("config") or {}).get("backbone_identity")
    if recorded:
        key["backbone"] = f"weights {recorded.rpartition('@')[2]}"
    return key


def _row(task: str, label: str, setting: str, layout: RunLayout, res: Result) -> dict:
    block: dict[str, Any] = dict(res["metrics"])
    cfg: dict[str, Any] = res.get("config") or {}
    per_class = res.get("per_class") or {}
    confusion = res.get("confusion") or {}
    return {
        "task": task,
        "label": label,
        "setting": setting,
        "tag": setting.partition("-")[2],
        "method": res.get("method", label),
        "seed": res.get("seed"),
        "shots": res.get("shots"),
        "backbone": res.get("backbone"),
        "path": str(layout.result),
        "folder": str(layout.folder),
        **{f"{role}_{m}": block[role][m] for role, m in METRIC_KEYS},
        "per_class_low": per_class.get("low") or {},
        "history": res.get("history") or [],
        "low_predicted_classes": predicted_classes(confusion.get("low")),
        "run_label": label,
        "options": cfg.get("options"),
        "method_config": cfg.get("method_config"),
        "val": res.get("val"),
        "config_key": config_key(res),
        "protocol": res.get("protocol") or "",
        "strict_zero_shot": is_strict_zero_shot(res),
    }


def _mixed_cell(folder: Path, rows: list[dict]) -> str | None:
    """``"<folder>: ..."`` naming the runs of one cell that differ in configuration, or None."""
    variants: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        variants[json.dumps(r["config_key"], sort_keys=True)].append(r)
    if len(variants) < 2:
        return None
    groups = sorted(variants.values(), key=lambda rs: (-len(rs), Path(rs[0]["folder"]).name))
    ref = groups[0]

    def names(rs: list[dict]) -> str:
        return ", ".join(Path(r["folder"]).name for r in rs)

    diffs = [
        f"{names(rs)} differ(s) from {names(ref)} in "
        + ", ".join(differences(ref[0]["config_key"], rs[0]["config_key"]))
        for rs in groups[1:]
    ]
    return f"{folder}: runs of different configurations, not averaged (cell left out): " + "; ".join(diffs)


def _runs_of(out: str | Path) -> Iterator[tuple[str | None, str, str, RunLayout]]:
    """``(task, label, setting, layout)`` of a grid's runs, then of a tune's final runs (``task``
    ``None``: the result's own task; label ``<method> tuned``, setting ``<shots>shot``, filled in by
    :func:`read_runs` from the result)."""
    yield from iter_grid_runs(out)
    for layout in iter_final_runs(out):
        yield None, TUNED, "", layout


def read_runs(out: str | Path) -> RunSet:
    """Every run under ``OUT/runs`` (:func:`kmat.run.layout.iter_grid_runs`) and ``OUT/final``
    (a tune's final runs, labelled ``<method> tuned``), checked.

    A run whose ``result.json`` is unreadable or not of the shape of
    :class:`kmat.run.schema.ResultModel` (e.g. a NaN metric) is left out and named in ``invalid``.
    Runs of one (task, label, setting) cell that differ in configuration (:func:`config_key`, e.g.
    one seed made with other epochs) are never averaged: the cell is left out of ``table_rows`` and
    named in ``mixed``.

    ``setting`` is the run's ``<shots>shot[-<tag>]`` folder. Where a (task, label) has runs of more
    than one setting, the row's ``label`` carries its setting (``kmat [4shot]``), so that runs of
    different settings are never averaged together (the one setting without options, if there is
    exactly one, keeps the plain label: ``kmat`` beside ``kmat [16shot-alpha=0.1]``);
    ``run_label`` keeps the folder's label. Rows also carry the run's given ``options``, its resolved
    ``method_config`` and its ``val`` block (``None`` when absent), for the sensitivity report.
    A run that is not strictly zero-shot has :data:`NOT_STRICT_MARK` at the end of its ``label``
    (and ``strict_zero_shot`` False): never averaged with strict runs, in any cell or "Avg." row.
    """
    runs = RunSet()
    for task, label, setting, layout in _runs_of(out):
        try:
            res = read_checked_result(layout.result)
        except ResultError as err:
            runs.invalid.append(str(err))
            continue
        if task is None:  # a tune's final run
            task, label = str(res["task"]), f"{res['method']} {label}"
            setting = f"{res['shots']}shot"
        runs.rows.append(_row(task, label, setting, layout, res))
    settings: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in runs.rows:
        settings[(r["task"], r["label"])].add(r["setting"])
    for r in runs.rows:
        own = settings[(r["task"], r["label"])]
        untagged = [s for s in own if "-" not in s]
        plain = untagged[0] if len(untagged) == 1 else None  # the defaults keep the plain label
        if len(own) > 1 and r["setting"] != plain:
            r["label"] = f"{r['label']} [{r['setting']}]"
        if not r["strict_zero_shot"]:
            r["label"] += NOT_STRICT_MARK
    cells: dict[Path, list[dict]] = defaultdict(list)
    for r in runs.rows:
        cells[Path(r["folder"]).parent].append(r)
    left_out: set[Path] = set()
    for folder, rs in cells.items():
        problem = _mixed_cell(folder, rs)
        if problem:
            runs.mixed.append(problem)
            runs.mixed_runs += len(rs)
            left_out.add(folder)
    runs.table_rows = [r for r in runs.rows if Path(r["folder"]).parent not in left_out]
    return runs


def collect(out: str | Path) -> list[dict]:
    """The rows of :func:`read_runs` that may be averaged (its ``table_rows``); each run or cell
    left out is logged as a warning."""
    runs = read_runs(out)
    for problem in runs.problems:
        log.warning("skipped %s", problem)
    return runs.table_rows


def predicted_classes(confusion: list[list[int]] | None) -> int | None:
    """How many classes a run ever predicted on a test split (columns of its confusion matrix with
    any count); 1 means the classifier collapsed onto one class."""
    if not confusion:
        return None
    return sum(1 for col in zip(*confusion, strict=True) if any(col))


def collapsed_runs(rows: list[dict]) -> list[str]:
    """``task/label/setting seed S`` of every run that predicted a single low-end class."""
    return [
        f"{r['task']}/{r.get('run_label', r['label'])}/{r['setting']} seed {r['seed']}"
        for r in rows
        if r.get("low_predicted_classes") == 1
    ]


def write_results_csv(rows: list[dict], path: str | Path) -> Path:
    cols = (
        ["task", "label", "method", "seed", "shots", "tag", "backbone"]
        + [f"{r}_{m}" for r, m in METRIC_KEYS]
        + ["low_predicted_classes", "strict_zero_shot", "protocol", "path"]
    )
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return atomic_write_bytes(path, buf.getvalue().encode())


def aggregate(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """``{(task, label): {"<role>_<metric>": (mean, std, n), "per_class_low": {class: mean},
    "per_class_low_std": {class: std over seeds}}}`` (None for a class no run has)."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["task"], r["label"])].append(r)
    agg = {}
    for key, rs in groups.items():
        cell: dict[str, tuple[float, float, int] | dict[str, float | None]] = {}
        for role, m in METRIC_KEYS:
            vals = [r[f"{role}_{m}"] for r in rs]
            cell[f"{role}_{m}"] = (
                statistics.fmean(vals),
                statistics.stdev(vals) if len(vals) > 1 else 0.0,
                len(vals),
            )
        classes = rs[0]["per_class_low"].keys()
        per_class: dict[str, float | None] = {}
        per_class_std: dict[str, float | None] = {}
        cell["per_class_low"] = per_class
        cell["per_class_low_std"] = per_class_std
        for c in classes:
            vals = [r["per_class_low"][c] for r in rs if r["per_class_low"].get(c) is not None]
            per_class[c] = statistics.fmean(vals) if vals else None
            per_class_std[c] = statistics.stdev(vals) if len(vals) > 1 else (0.0 if vals else None)
        agg[key] = cell
    return agg


def is_sensitivity_label(label: str) -> bool:
    """Whether a row label of :func:`collect` is a sensitivity run (kept out of Table 2's columns)."""
    return label == SENSITIVITY_LABEL or label.startswith(f"{SENSITIVITY_LABEL} [")


def _task_order(tasks: set[str]) -> list[str]:
    return [t for t in PAPER_TASKS if t in tasks] + sorted(t for t in tasks if t not in PAPER_TASKS)


def _avg_cell(agg: dict, tasks: list[str], label: str) -> dict | None:
    found = [agg.get((t, label)) for t in tasks]
    cells = [c for c in found if c is not None]
    if not cells or len(cells) < len(found):  # some task lacks this row
        return None
    return {
        k: (statistics.fmean(c[k][0] for c in cells), statistics.fmean(c[k][1] for c in cells), len(cells))
        for k in (f"{r}_{m}" for r, m in METRIC_KEYS)
    }


def _fmt(v: tuple[float, float, int], std: bool, bold: bool) -> str:
    s = f"{v[0]:.1f}" + (f"±{v[1]:.1f}" if std else "")
    return f"**{s}**" if bold else s


def table2_markdown(
    agg: dict, std: bool = False, labels: list[str] | None = None, avg_cells: dict | None = None
) -> str:
    """Paper Table 2 layout: per task rows Hi / Lo / H, a column per method, cells "acc (macro-F1)";
    the paper's six methods first, then the others of Table 2+ in its order, then the rest sorted."""
    known = [lab for lab, _ in TABLE2_PLUS]
    present = {lab for _, lab in agg if not is_sensitivity_label(lab)}
    labels = labels or [lab for lab in known if lab in present] + sorted(
        present - set(known) - {r[0] for r in ABLATION_ROWS}
    )
    tasks = _task_order({t for t, lab in agg if lab in labels})
    lines = [
        "| Dataset | | " + " | ".join(display_name(lab) for lab in labels) + " |",
        "|---|---|" + "---|" * len(labels),
    ]
    blocks = [(TASK_DISPLAY.get(t, t), {lab: agg.get((t, lab)) for lab in labels}) for t in tasks]
    if len(tasks) > 1:
        blocks.append(("Avg.", avg_cells or {lab: _avg_cell(agg, tasks, lab) for lab in labels}))
    for title, cells in blocks:
        for i, role in enumerate(("high", "low", "h")):
            best = {
                m: max((c[f"{role}_{m}"][0] for c in cells.values() if c), default=None)
                for m in ("acc", "macro_f1")
            }
            out = []
            for lab in labels:
                c = cells[lab]
                if c is None:
                    out.append("–")
                    continue
                a, f = c[f"{role}_acc"], c[f"{role}_macro_f1"]
                out.append(f"{_fmt(a, std, a[0] == best['acc'])} ({_fmt(f, std, f[0] == best['macro_f1'])})")
            lines.append(f"| {title if i == 0 else ''} | {ROLE_LABEL[role]} | " + " | ".join(out) + " |")
    notes = [seeds_note(agg, tasks, labels)]
    if any(lab.endswith(NOT_STRICT_MARK) for lab in labels):
        notes.append(NOT_STRICT_NOTE)
    return "\n".join(lines) + "\n" + "".join(f"\n{note}\n" for note in notes if note)


def seeds_note(agg: dict, tasks: list[str], labels: list[str]) -> str:
    """When the cells of a table are not all means over the same number of seeds: a line naming
    the cells with fewer (``K-MaT on Skin I: n=2``); "" when they all have the same."""
    n = {(t, lab): agg[(t, lab)]["high_acc"][2] for t in tasks for lab in labels if (t, lab) in agg}
    if len(set(n.values())) < 2:
        return ""
    most = max(n.values())
    fewer = [
        f"{display_name(lab)} on {TASK_DISPLAY.get(t, t)}: n={k}" for (t, lab), k in n.items() if k < most
    ]
    return (
        f"Seeds per cell differ: these cells are means over fewer seeds than the others (n={most}): "
        + "; ".join(fewer)
    )


def paper_table2_markdown(tasks: list[str]) -> str:
    """The published Table 2 in the same layout (for tasks known to the paper)."""
    from kmat.report.paper import TABLE2

    def cell(c: dict) -> dict:
        return {
            f"{role}_{m}": (c[role][j], 0.0, 1)
            for role in ("high", "low", "h")
            for j, m in enumerate(("acc", "macro_f1"))
        }

    shown = [t for t in tasks if t in TABLE2 and t != "avg"]
    agg = {(t, lab): cell(c) for t in shown for lab, c in TABLE2[t].items()}
    printed_avg = (
        {lab: cell(c) for lab, c in TABLE2["avg"].items()} if set(shown) == set(PAPER_TASKS) else None
    )
    return table2_markdown(agg, avg_cells=printed_avg) if agg else "(no task of this grid is in the paper)\n"


def table3_markdown(agg: dict, compare_paper: bool = False) -> str:
    """Paper Table 3: per ablation row (CSC, MSC, anchor, FGW) Hi / Lo / H acc and F1, averaged over
    tasks, and the relative improvement of H over row 1 in %."""
    labels = [r[0] for r in ABLATION_ROWS]
    tasks = _task_order({t for t, lab in agg if lab in labels})
    full = [t for t in tasks if all((t, lab) in agg for lab in labels)]
    head = (
        "| # | CSC | MSC | L_anchor | L_FGW | Hi ACC | Hi F1 | Lo ACC | Lo F1 | H ACC | H F1 "
        "| Rel. Impr. ACC (%) | Rel. Impr. F1 (%) |"
    )
    lines = [
        f"Averaged over tasks: {', '.join(TASK_DISPLAY.get(t, t) for t in full) or 'none complete'}",
        "",
        head,
        "|" + "---|" * 13,
    ]
    base = _avg_cell(agg, full, labels[0]) if full else None
    mark = lambda b: "✓" if b else ""  # noqa: E731
    for i, (lab, csc, msc, anc, fgw) in enumerate(ABLATION_ROWS, start=1):
        c = _avg_cell(agg, full, lab) if full else None
        if c is None:
            vals = ["–"] * 8
        else:
            v = [
                c[k][0]
                for k in ("high_acc", "high_macro_f1", "low_acc", "low_macro_f1", "h_acc", "h_macro_f1")
            ]
            rel = [
                100.0 * (v[4] - base["h_acc"][0]) / base["h_acc"][0] if base and base["h_acc"][0] else 0.0,
                100.0 * (v[5] - base["h_macro_f1"][0]) / base["h_macro_f1"][0]
                if base and base["h_macro_f1"][0]
                else 0.0,
            ]
            vals = [f"{x:.2f}" for x in v + rel]
        lines.append(
            f"| {i} | {mark(csc)} | {mark(msc)} | {mark(anc)} | {mark(fgw)} | " + " | ".join(vals) + " |"
        )
    if compare_paper:
        from kmat.report.paper import TABLE3

        lines += ["", "Published (K-MaT paper, Table 3, four-task average):", "", head, "|" + "---|" * 13]
        p1 = TABLE3[labels[0]]
        for i, (lab, csc, msc, anc, fgw) in enumerate(ABLATION_ROWS, start=1):
            v = list(TABLE3[lab])
            rel = [100.0 * (v[4] - p1[4]) / p1[4], 100.0 * (v[5] - p1[5]) / p1[5]]
            lines.append(
                f"| {i} | {mark(csc)} | {mark(msc)} | {mark(anc)} | {mark(fgw)} | "
                + " | ".join(f"{x:.2f}" for x in v + rel)
                + " |"
            )
    return "\n".join(lines) + "\n"


def ablation_rows_common_seeds(rows: list[dict]) -> tuple[list[dict], dict[str, list[int]]]:
    """Rows of the ablation labels, restricted per task to the seeds that every row has run
    (so that row 8, shared with Table 2, is not averaged over more seeds than the others)."""
    labels = [r[0] for r in ABLATION_ROWS]
    by_task: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    for r in rows:
        if r["label"] in labels:
            by_task[r["task"]][r["label"]].add(r["seed"])
    common = {
        t: sorted(set.intersection(*(d[lab] for lab in labels)))
        for t, d in by_task.items()
        if all(lab in d for lab in labels)
    }
    keep = [r for r in rows if r["label"] in labels and r["seed"] in common.get(r["task"], [])]
    return keep, common


def build_tables(
    out: Path,
    rows: list[dict],
    agg: dict,
    std: bool = False,
    compare_paper: bool = False,
    tables: Collection[int | str] = (2, 3),
    runs: RunSet | None = None,
) -> dict[str, str]:
    """Write ``results.csv``, ``table2.md``, ``table3.md`` and/or ``sensitivity.md`` under ``out``
    (``tables``: any of 2, 3 and "sensitivity"); return the texts by name ("table2", "table3",
    "sensitivity"). ``rows`` come from :func:`collect` (or are ``runs.table_rows``), ``agg`` is their
    :func:`aggregate`. With ``runs`` (:func:`read_runs`), ``results.csv`` lists all its valid runs
    and every table ends with the runs it leaves out."""
    names = table_names(tables)
    write_results_csv(runs.rows if runs is not None else rows, out / "results.csv")
    left_out = runs.skipped_text() if runs is not None else ""
    tail = f"\n{left_out}" if left_out else ""
    texts: dict[str, str] = {}
    if "2" in names:
        text = (
            "# Table 2: cross-modal generalisation, acc (macro-F1) %, mean over seeds\n\n"
            + ("± is the std over seeds (Avg.: the mean of the per-task stds)\n\n" if std else "")
            + table2_markdown(agg, std)
        )
        if compare_paper:
            tasks = _task_order({t for t, _ in agg})
            text += "\n## Published (K-MaT paper, Table 2)\n\n" + paper_table2_markdown(tasks)
        text += tail
        atomic_write_bytes(out / "table2.md", text.encode())
        texts["table2"] = text
    if "3" in names:
        rows3, seeds = ablation_rows_common_seeds(rows)
        note = ", ".join(
            f"{TASK_DISPLAY.get(t, t)}: seeds {' '.join(map(str, s))}" for t, s in sorted(seeds.items())
        )
        labels3 = {r[0] for r in ABLATION_ROWS}
        unmatched = sum(1 for r in rows if r["label"] in labels3 and r["task"] in seeds) - len(rows3)
        text = (
            "# Table 3: ablation, mean over tasks and seeds\n\n"
            + (f"Seeds used (those every ablation row has): {note}\n\n" if note else "")
            + (
                f"{unmatched} run(s) not used: their seed is not run by every ablation row of their task\n\n"
                if unmatched
                else ""
            )
            + table3_markdown(aggregate(rows3), compare_paper)
            + tail
        )
        atomic_write_bytes(out / "table3.md", text.encode())
        texts["table3"] = text
    if "sensitivity" in names:
        text = sensitivity_markdown(sensitivity_studies(rows)) + tail
        atomic_write_bytes(out / "sensitivity.md", text.encode())
        texts["sensitivity"] = text
    return texts


TABLES = ("2", "3", "sensitivity")


def table_names(tables: Collection[int | str]) -> set[str]:
    """``{"2", "sensitivity"}`` from ``(2, "sensitivity")``; :class:`ConfigError` for an unknown one."""
    names = {str(t) for t in tables}
    unknown = sorted(names - set(TABLES))
    if unknown:
        raise ConfigError(f"unknown table(s) {', '.join(unknown)}; tables: {', '.join(TABLES)}")
    return names


def write_report(
    out: str | Path,
    tables: Collection[int | str] | None = None,
    std: bool = False,
    compare_paper: bool = False,
    figures: bool = True,
    strict: bool = False,
) -> dict[str, str]:
    """Tables, ``results.csv`` and figures of the runs under ``out`` (read once); returns the texts.

    ``tables``: any of 2, 3 and "sensitivity" (:func:`build_tables`); by default 2 and 3, and
    "sensitivity" when there are sensitivity runs. With "sensitivity", the figures include its heat
    maps. The tables (of the sensitivity report, its summary) and the paths written are logged
    (logger ``kmat.report.results``).

    Runs the tables cannot use (:func:`read_runs`: an invalid ``result.json``, a cell of mixed
    configurations) are logged as one warning each, and the tables say how many were left out; with
    ``strict``, any of them is a :class:`ResultError` listing them all, and nothing is written."""
    out = Path(out)
    for tmp in remove_stale_temp_files(out, STALE_TMP_S, depth=1):  # left by a killed earlier report
        log.debug("removed %s, left behind by a killed write", tmp)
    runs = read_runs(out)
    if runs.problems:
        if strict:
            raise ResultError(
                f"{runs.skipped} run(s) under {out / 'runs'} cannot be used in the tables: "
                + "; ".join(runs.problems)
            )
        for problem in runs.problems:
            log.warning("left out of the tables: %s", problem)
    rows = runs.table_rows
    agg = aggregate(rows)
    if tables is None:  # a tune's folder (no runs/): Table 2 of its final runs only
        has_sens = any(r["run_label"] == SENSITIVITY_LABEL for r in rows)
        tables = ("2", "3") if (out / "runs").is_dir() or not rows else ("2",)
        tables += ("sensitivity",) if has_sens else ()
    names = table_names(tables)
    texts = build_tables(out, rows, agg, std=std, compare_paper=compare_paper, tables=names, runs=runs)
    studies = sensitivity_studies(rows) if "sensitivity" in names else None
    for name, text in texts.items():
        shown = sensitivity_summary_text(studies) if name == "sensitivity" and studies is not None else text
        log.info("\n%s\n(written to %s)", shown.rstrip(), out / (name + ".md"))
    log.info("per-run results: %s", out / "results.csv")
    collapsed = collapsed_runs(runs.rows)
    if collapsed:
        log.info(
            "%d run(s) predicted a single class on the low-end test split (collapsed): %s",
            len(collapsed),
            ", ".join(collapsed),
        )
    if figures:
        try:
            from kmat.report.plots import make_figures, sensitivity_figures

            with output_errors(Path(out) / "figures"):
                paths = make_figures(out, agg, rows)
                if studies is not None:
                    paths += sensitivity_figures(out, studies)
        except KmatError as err:  # matplotlib missing, or the figures folder cannot be written
            log.warning("figures skipped: %s", err)
        else:
            if paths:
                log.info("figures: %s", ", ".join(str(p) for p in paths))
    return texts
