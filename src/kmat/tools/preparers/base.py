"""The preparer skeleton: collect rows -> check problems -> split -> write manifests and task.json.

A dataset preparer subclasses :class:`Preparer` and implements :meth:`Preparer.collect` (raw
metadata -> manifest rows with resolved paths, plus problems) and :meth:`Preparer.split` (fill in
``row.split``); :func:`run` does everything else the same way for every dataset.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import SupportsFloat

from kmat.data.definitions import load_definition, validate_definition
from kmat.tools.preparers.common import ROLES, SPLITS, PrepareError, Problems, Row, check_raw_folder
from kmat.tools.preparers.listing import training_gap
from kmat.tools.preparers.report import ModalityReport, PrepareReport
from kmat.tools.preparers.splits import assign_generated_splits, ratios_of
from kmat.tools.preparers.writer import (
    check_overwrite,
    jsonable,
    manifest_bytes,
    merge_task_json,
    problems_bytes,
    read_json,
    sha256_bytes,
    task_json_bytes,
    write_bytes_if_changed,
)

COMMON_OPTIONS: dict[str, object] = {"skip_missing": False, "seed": 0, "overwrite": False}
MAX_LISTED = 10


@dataclass
class Collected:
    """Rows found in a raw folder. ``root``: the absolute folder the row paths are relative to."""

    root: Path
    rows: dict[str, list[Row]]
    problems: Problems = field(default_factory=Problems)
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # preparer-private state between collect and split


class Preparer:
    """Base class of the dataset preparers (one subclass per raw dataset)."""

    name: str = ""
    task: str = ""
    roles: tuple[str, ...] = ()
    description: str = ""
    options: dict[str, object] = {}

    def definition(self, out: Path, opts: dict) -> dict:
        """The task definition with the options applied (default: the shipped one, unchanged)."""
        return load_definition(self.task)

    def target_roles(self, spec: dict, opts: dict) -> tuple[str, ...]:
        return self.roles

    def collect(self, raw: Path, spec: dict, opts: dict) -> Collected:
        raise NotImplementedError

    def split(self, col: Collected, spec: dict, opts: dict) -> dict[str, str]:
        """Set ``row.split`` on every row; return the split provenance text per role."""
        raise NotImplementedError


def generated_split(
    col: Collected, spec: dict, roles: tuple[str, ...], opts: dict, namespace: str, grouped_by: str
) -> dict[str, str]:
    """A generated split of the rows of ``roles`` taken together (paired rows share their split).

    Ratios: ``opts["ratios"]`` if given, else the paper's counts of the first role. With one role and
    as many images as the paper, the paper's per-split totals are met exactly.
    """
    rows = [r for role in roles for r in col.rows[role]]
    expected = (spec.get("expected_counts") or {}).get(roles[0])
    custom = opts.get("ratios")
    if custom:
        ratios = _parse_ratios(custom)
        source = "ratios " + "/".join(f"{ratios[s]:.3f}" for s in SPLITS)
    elif expected:
        ratios = ratios_of(expected)
        source = "the paper's split ratios " + "/".join(f"{100 * ratios[s]:.1f}" for s in SPLITS) + " %"
    else:
        ratios = {"train": 0.7, "val": 0.15, "test": 0.15}
        source = "ratios 70/15/15 %"
    totals = expected if (len(roles) == 1 and not custom and expected) else None
    got = assign_generated_splits(rows, spec["classes"], int(opts["seed"]), namespace, ratios, totals)
    if totals and sum(totals.values()) == len(rows):
        source = "the paper's exact per-split totals " + "/".join(str(totals[s]) for s in SPLITS)
    paired = " and shared by both modalities (pair_id)" if len(roles) > 1 else ""
    text = (
        f"generated: stratified by class, grouped by {grouped_by}{paired}, {source}, "
        f"seed={opts['seed']} -> {'/'.join(str(got[s]) for s in SPLITS)}"
    )
    return {role: text for role in roles}


def _parse_ratios(
    value: dict[str, SupportsFloat | str] | str | Iterable[SupportsFloat | str],
) -> dict[str, float]:
    if isinstance(value, dict):
        vals = [float(value.get(s, 0)) for s in SPLITS]
    elif isinstance(value, str):
        vals = [float(x) for x in value.replace("/", ",").split(",")]
    else:
        vals = [float(x) for x in value]
    if len(vals) != 3 or any(v < 0 for v in vals) or sum(vals) <= 0:
        raise PrepareError(f"ratios must be three non-negative numbers train,val,test; got {value!r}")
    return {s: v / sum(vals) for s, v in zip(SPLITS, vals, strict=True)}


def resolve_options(prep: Preparer, given: dict) -> dict:
    """Defaults merged with ``given`` (``None`` means default); unknown names are an error."""
    allowed = {**COMMON_OPTIONS, **prep.options}
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise PrepareError(
            f"unknown option(s) {unknown} for preparer {prep.name!r}; its options are {sorted(allowed)}"
        )
    return {k: (given[k] if given.get(k) is not None else v) for k, v in allowed.items()}


def _flag_duplicates(col: Collected) -> None:
    for role, rows in col.rows.items():
        seen = Counter(r.path for r in rows)
        dupes = {p for p, n in seen.items() if n > 1}
        if dupes:
            for p in sorted(dupes):
                col.problems.add(role, "ambiguous", p, f"{seen[p]} metadata entries resolve to this one file")
            col.rows[role] = [r for r in rows if r.path not in dupes]


def _raise_on_problems(col: Collected, opts: dict, spec: dict) -> None:
    bad = col.problems.of_kind("missing", "ambiguous")
    if not bad or opts["skip_missing"]:
        return
    kinds = Counter(p.kind for p in bad)
    head = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    listed = "\n  ".join(p.format() for p in bad[:MAX_LISTED])
    more = f"\n  ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
    raise PrepareError(
        f"{head} image file(s) under {col.root}:\n  {listed}{more}\n"
        f"Fix the download, or pass skip_missing=True to leave them out (they are then listed in a "
        f"*.skipped.csv report beside the manifest of task {spec['task']!r}).",
        options={"skip_missing": None},
    )


def _check_classes(col: Collected, spec: dict, roles: tuple[str, ...]) -> None:
    for role in roles:
        rows = col.rows.get(role, [])
        mod = spec[role]["modality"]
        if not rows:
            raise PrepareError(f"no images found for {mod} ({spec[role].get('dataset')}) under {col.root}")
        have = Counter(r.label for r in rows)
        unknown = sorted(set(have) - set(spec["classes"]))
        if unknown:
            raise PrepareError(
                f"unknown class(es) {unknown} for {mod}; the task's classes are {spec['classes']}"
            )
        empty = [c for c in spec["classes"] if not have.get(c)]
        if empty:
            raise PrepareError(
                f"empty class(es) {empty}: no {mod} image of {'that class' if len(empty) == 1 else 'these classes'} "
                f"under {col.root} (task {spec['task']!r} needs every class in {spec['classes']})"
            )


def _counts(rows: list[Row], classes: list[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for split in (*SPLITS, "excluded"):
        c = Counter(r.label for r in rows if r.split == split)
        out[split] = {k: c.get(k, 0) for k in classes}
    return out


def _loadable(folder: Path) -> tuple[bool, str]:
    from kmat.data.task import TaskError, load_task

    try:
        load_task(folder, check_files=False)
    except TaskError as err:
        return False, str(err)
    return True, ""


def run(prep: Preparer, raw: str | Path, out: str | Path, options: dict) -> PrepareReport:
    """Prepare ``raw`` into the data root ``out`` (see :func:`kmat.tools.preparers.prepare_dataset`)."""
    opts = resolve_options(prep, options)
    raw_dir = check_raw_folder(raw)
    out_dir = Path(out).expanduser().resolve()
    spec = prep.definition(out_dir, opts)
    validate_definition(spec, f"task {spec.get('task')!r}")
    roles = prep.target_roles(spec, opts)
    col = prep.collect(raw_dir, spec, opts)
    _flag_duplicates(col)
    _raise_on_problems(col, opts, spec)
    _check_classes(col, spec, roles)
    provenance = prep.split(col, spec, opts)
    for role in roles:
        unset = [r.path for r in col.rows[role] if r.split not in (*SPLITS, "excluded")]
        if unset:
            raise PrepareError(f"internal error: {len(unset)} row(s) without a split, e.g. {unset[0]}")

    folder = out_dir / spec["task"]
    payload: dict[str, tuple[Path, bytes, Path, bytes | None]] = {}
    for role in roles:
        manifest = folder / spec[role]["manifest"]
        data = manifest_bytes(col.rows[role])
        check_overwrite(manifest, data, bool(opts["overwrite"]))
        probs = [p for p in col.problems.items if p.role == role]
        skipped = manifest.with_name(manifest.name.removesuffix(".csv") + ".skipped.csv")
        payload[role] = (manifest, data, skipped, problems_bytes(probs) if probs else None)

    record_opts = {k: jsonable(v) for k, v in opts.items() if k != "overwrite"}
    prepared: dict[str, dict] = {
        role: {
            "root": str(col.root),
            "sha256": sha256_bytes(payload[role][1]),
            "provenance": provenance[role],
            "record": {"preparer": prep.name, "options": record_opts},
        }
        for role in roles
    }
    tj = folder / "task.json"
    doc, merge_notes = merge_task_json(spec, read_json(tj), prepared)

    folder.mkdir(parents=True, exist_ok=True)
    for manifest, data, skipped, pdata in payload.values():
        write_bytes_if_changed(manifest, data)
        if pdata is not None:
            write_bytes_if_changed(skipped, pdata)
        elif skipped.exists():
            skipped.unlink()
    write_bytes_if_changed(tj, task_json_bytes(doc))

    loadable, why = _loadable(folder)
    gap = training_gap(folder) if loadable else ("", False)
    notes = col.notes + merge_notes
    if not loadable and all(isinstance(doc.get(r), dict) and "root" in doc[r] for r in ROLES):
        notes.append(f"load_task check failed: {why}")
    expected = spec.get("expected_counts") or {}
    mods = [
        ModalityReport(
            role=role,
            modality=spec[role]["modality"],
            dataset=spec[role].get("dataset", prep.name),
            manifest=payload[role][0],
            root=col.root,
            classes=list(spec["classes"]),
            counts=_counts(col.rows[role], spec["classes"]),
            expected=expected.get(role),
            provenance=provenance[role],
            sha256=prepared[role]["sha256"],
            skipped_report=payload[role][2] if payload[role][3] is not None else None,
        )
        for role in roles
    ]
    return PrepareReport(
        dataset=prep.name,
        task=spec["task"],
        task_folder=folder,
        task_json=tj,
        modalities=mods,
        missing=col.problems.of_kind("missing"),
        ambiguous=col.problems.of_kind("ambiguous"),
        skipped=col.problems.of_kind("skipped"),
        notes=notes,
        loadable=loadable,
        train_gap=gap[0],
        template=gap[1],
    )
