"""Deterministic, group-aware, nested K-shot subsets (docs/methods.md and docs/datasets.md).

For each class (in task order), its groups (``group_id``: patient, lesion, scan; the image itself
when absent) are sorted and permuted by a generator seeded from
``sha256("{task}|{dataset}|{modality}|{class}|{seed}")``; the first K groups are taken, one image
from each (chosen by a generator keyed on the group too). The permutation does not depend on K,
so subsets are nested (1 in 2 in 4 in 8 in 16); nothing depends on file order or global random
state. A class with fewer groups than K repeats its groups cyclically, and a warning says so.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from pathlib import Path

from kmat.data.task import Modality, Sample, Task
from kmat.utils.io import atomic_write_bytes, csv_bytes
from kmat.utils.seeding import seeded_rng


def sample_few_shot(task: Task, mod: Modality, split: str, k: int, seed: int) -> list[Sample]:
    """K images per class from ``mod``'s ``split`` (see module docstring). ``k <= 0`` takes all."""
    rows = mod.split(split)
    if k <= 0:
        return sorted(rows, key=lambda s: (s.label, s.rel))
    namespace = f"{task.name}|{mod.dataset}|{mod.name}"
    out: list[Sample] = []
    short: list[str] = []
    for ci, cname in enumerate(task.classes):
        groups: dict[str, list[Sample]] = defaultdict(list)
        for s in rows:
            if s.label == ci:
                groups[s.group_id].append(s)
        if not groups:
            short.append(f"{cname} (0)")
            continue
        gids = sorted(groups)
        perm = seeded_rng(namespace, cname, seed).permutation(len(gids))
        order = [gids[i] for i in perm]
        if len(order) < k:
            short.append(f"{cname} ({len(order)})")
        picked = [order[i % len(order)] for i in range(k)]
        for gid in picked:
            members = sorted(groups[gid], key=lambda s: s.rel)
            j = int(seeded_rng(namespace, cname, seed, gid).integers(len(members)))
            out.append(members[j])
    if short:
        warnings.warn(
            f"{task.name}/{mod.name} {split}: fewer than K={k} groups for {', '.join(short)}; "
            "those classes repeat their images cyclically",
            stacklevel=2,
        )
    return out


def write_subset(samples: list[Sample], classes: list[str], path: str | Path) -> Path:
    """Write a subset as a manifest CSV (for auditing a run)."""
    path = Path(path)
    rows = ([s.rel, classes[s.label], s.split, s.group_id] for s in samples)
    return atomic_write_bytes(path, csv_bytes(["path", "label", "split", "group_id"], rows))
