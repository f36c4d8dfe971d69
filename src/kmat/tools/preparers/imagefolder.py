"""A generic ImageFolder-style download (``<class>/**`` or ``<split>/<class>/**``) as one modality of
a task: a shipped task (``task="breast", modality="ultrasound"``), a task already under the data
root, or a new one (then ``classes`` and ``role`` are required). ``role`` is ``high`` (the modality
trained on) or ``low`` (only evaluated); ``high_end`` / ``low_end`` are accepted too.

Class folders are matched to class keys case-insensitively (space = underscore = hyphen), through
the task's label map and ``class_aliases``; an unknown folder is an error. Files matching an
``exclude`` glob (e.g. ``*_mask*``) are skipped. Split folders (train/val/valid/test) are used as
they are; otherwise a split is generated (stratified; ``ratios`` if given, else the paper's counts
for a shipped task, else 70/15/15 for a high-end modality). A low-end modality is never trained on:
without ``ratios`` or paper counts, all its images are test except a validation part of
``low_val_fraction`` (default 0: none; e.g. 0.1 for ``kmat tune --select-on low``).
``group_id`` = the image path without extension.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from kmat.data.definitions import load_definition, task_names
from kmat.tools.preparers.base import Collected, Preparer, generated_split
from kmat.tools.preparers.common import ROLES, PrepareError, Row, role_of
from kmat.tools.preparers.folders import folder_lookup, scan_tree
from kmat.tools.preparers.writer import read_json

ROLE_NAMES = {"high": "high_end", "high_end": "high_end", "low": "low_end", "low_end": "low_end"}


def _base_definition(out: Path, opts: dict) -> dict:
    name = str(opts["task"])
    if name in task_names():
        return load_definition(name)
    existing = read_json(out / name / "task.json")
    if existing is not None:
        return existing
    classes = opts["classes"]
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    if not classes or not opts["role"]:
        raise PrepareError(
            f"task {name!r} is neither shipped ({task_names()}) nor under {out}: a new task needs "
            "its class keys (classes) and the role of this modality (role: high = trained on, "
            "low = only evaluated)",
            options={"classes": None, "role": None},
        )
    return {
        "task": name,
        "classes": list(classes),
        "classnames": {},
        "split_provenance": {},
        "expected_counts": {},
    }


def _role_or_hint(spec: dict, modality: str) -> str:
    """The role of an existing modality; else an error that lists the task's modalities and says
    how to add this one."""
    have = {
        r: spec[r]["modality"] for r in ROLES if isinstance(spec.get(r), dict) and spec[r].get("modality")
    }
    for role, mod in have.items():
        if mod == modality:
            return role
    listed = ", ".join(f"{r.split('_')[0]}-end {m!r}" for r, m in have.items()) or "none yet"
    free = [r.split("_")[0] for r in ROLES if r not in have]
    if free:
        raise PrepareError(
            f"task {spec.get('task')!r} has no modality {modality!r} (its modalities: {listed}); to add "
            f"{modality!r} as its {free[0]}-end modality, give its role ({free[0]})",
            options={"role": free[0]},
        )
    raise PrepareError(
        f"task {spec.get('task')!r} has no modality {modality!r} (its modalities: {listed}); to "
        "replace one of them, give the role (high or low) this modality takes",
        options={"role": None},
    )


def _low_end_ratios(opts: dict) -> dict[str, float]:
    value = opts["low_val_fraction"]
    try:
        frac = float(value or 0.0)
    except (TypeError, ValueError):
        frac = -1.0
    if not 0.0 <= frac < 1.0:
        raise PrepareError(
            f"low_val_fraction must be a number in [0, 1), got {value!r}", options={"low_val_fraction": "0.1"}
        )
    return {"train": 0.0, "val": frac, "test": 1.0 - frac}


class ImageFolderPreparer(Preparer):
    name = "imagefolder"
    task = ""
    roles = ()
    description = "any <class>/ or <split>/<class>/ folder tree -> one modality of a task"
    options: dict[str, object] = {
        "task": None,  # required: task name (shipped, existing under the data root, or new)
        "modality": None,  # required: modality key, e.g. ultrasound
        "role": None,  # high | low (default: the task's role of that modality)
        "classes": None,  # class order of a new task
        "class_aliases": None,  # {folder name: class key}
        "exclude": None,  # file-name globs to skip, e.g. ["*_mask*"]
        "dataset_name": "imagefolder",  # the manifest's dataset column and file-name prefix
        "display_name": None,  # how prompts name the modality (default: the task's, or the key)
        "split_folders": "auto",  # auto | yes | no
        "ratios": None,  # train,val,test ratios of a generated split (default: see the module doc)
        "low_val_fraction": None,  # low-end modality: share of validation images (default 0: all test)
    }

    def definition(self, out: Path, opts: dict) -> dict:
        for req in ("task", "modality"):
            if not opts[req]:
                raise PrepareError(f"the imagefolder preparer needs the option {req}", options={req: None})
        spec = _base_definition(out, opts)
        modality = str(opts["modality"])
        if opts["role"]:
            role = ROLE_NAMES.get(str(opts["role"]).lower())
            if role is None:
                raise PrepareError(
                    f"role must be high or low (high_end / low_end also accepted), got {opts['role']!r}",
                    options={"role": None},
                )
        else:
            role = _role_or_hint(spec, modality)
        other = spec.get(ROLES[1 - ROLES.index(role)])
        if isinstance(other, dict) and other.get("modality") == modality:
            raise PrepareError(
                f"modality {modality!r} is already the other modality of task {spec['task']!r}"
            )
        given = spec.get(role)
        old: dict = given if isinstance(given, dict) else {}
        same = old.get("modality") == modality
        dataset = str(opts["dataset_name"])
        label_map = dict(old.get("label_map", {})) if same else {}
        label_map.update(opts["class_aliases"] or {})
        spec[role] = {
            **(old if same else {}),
            "dataset": dataset,
            "preparer": "imagefolder",
            "modality": modality,
            "display_name": opts["display_name"]
            or (old.get("display_name") if same else None)
            or modality.replace("_", " "),
            "manifest": f"{dataset}__{modality}.csv",
            "label_map": label_map,
        }
        if not same:
            spec.get("expected_counts", {}).pop(role, None)
        return spec

    def target_roles(self, spec: dict, opts: dict) -> tuple[str, ...]:
        return (role_of(spec, str(opts["modality"])),)

    def collect(self, raw: Path, spec: dict, opts: dict) -> Collected:
        role = self.target_roles(spec, opts)[0]
        block = spec[role]
        lookup = folder_lookup(block.get("label_map", {}), spec["classes"], opts["class_aliases"])
        exclude = opts["exclude"] or []
        exclude = [exclude] if isinstance(exclude, str) else list(exclude)
        images, n_ex, used = scan_tree(
            raw, lookup, exclude, str(opts["split_folders"]), what=f"task {spec['task']!r}"
        )
        col = Collected(root=raw, rows={role: []}, extra={"split_folders": used})
        for im in images:
            group = str(PurePosixPath(im.rel).with_suffix(""))
            row = Row(im.rel, im.label, block["modality"], block["dataset"], group, "", im.folder)
            row.split = im.split
            col.rows[role].append(row)
        if n_ex:
            col.notes.append(f"excluded {n_ex} file(s) matching {exclude}")
        return col

    def split(self, col: Collected, spec: dict, opts: dict) -> dict[str, str]:
        role = self.target_roles(spec, opts)[0]
        if col.extra["split_folders"]:
            if role == ROLES[1] and any(r.split == "train" for r in col.rows[role]):
                col.notes.append("the low-end modality is only evaluated: its train images are never used")
            return {role: "the download's own split folders"}
        namespace = f"imagefolder|{spec['task']}|{spec[role]['modality']}"
        paper = (spec.get("expected_counts") or {}).get(role)
        low_default = (
            role == ROLES[1] and not opts["ratios"] and (not paper or opts["low_val_fraction"] is not None)
        )
        if not low_default:
            return generated_split(col, spec, (role,), opts, namespace, "image")
        ratios = _low_end_ratios(opts)
        got = generated_split(col, spec, (role,), {**opts, "ratios": ratios}, namespace, "image")
        part = "all images test" if ratios["val"] == 0 else f"{ratios['val']:.0%} validation, the rest test"
        return {role: f"low end (only evaluated, never trained on): {part}; {got[role]}"}
